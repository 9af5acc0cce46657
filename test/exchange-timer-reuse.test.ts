// The upstream-side timeouts run on one timer per client connection, refreshed per request
// (src/http/exchange.ts): a later request on a keep-alive connection gets its own full
// timeouts.response_header, and a response body that stalls is cut after timeouts.idle, which
// needs the timer re-armed at a shorter delay than it started with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { proxyFixture } from './support/fixture.ts';
import { request } from './support/proxy.ts';

test('each request on a keep-alive connection gets a full response_header timeout', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t, { upstream: { timeouts: { response_header: '400ms' } } });
  up.handlers.set('/slow', (_req, res) => setTimeout(() => res.end('slow'), 250));
  up.handlers.set('/hang', () => {});
  // two requests of 250 ms each: the second must not inherit the first one's deadline
  assert.equal((await request(proxy.port, agent, 'GET', '/slow')).status, 200);
  await sleep(100);
  assert.equal((await request(proxy.port, agent, 'GET', '/slow')).status, 200);
  const t0 = Date.now();
  const r = await request(proxy.port, agent, 'GET', '/hang');
  const took = Date.now() - t0;
  assert.equal(r.status, 504);
  assert.match(r.body.toString(), /MTLS_ERR_UPSTREAM_RESPONSE_TIMEOUT/);
  assert.ok(took >= 380 && took < 3000, `took ${took} ms`);
});

test('a response body that stalls is cut after timeouts.idle', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t, { upstream: { timeouts: { idle: '400ms' } } });
  up.handlers.set('/stall', (_req, res) => {
    res.writeHead(200, { 'content-length': '100' });
    // activity 200 ms in: the idle deadline moves past the timer's first expiry
    setTimeout(() => res.write('x'), 200);
  });
  const t0 = Date.now();
  const outcome = await new Promise<string>((resolve) => {
    const r = https.get({ host: '127.0.0.1', port: proxy.port, path: '/stall', agent, servername: 'localhost' }, (res) => {
      res.on('data', () => {});
      res.on('end', () => resolve('complete'));
      res.on('aborted', () => resolve('aborted'));
      res.on('error', () => resolve('error'));
    });
    r.on('error', () => resolve('error'));
  });
  const took = Date.now() - t0;
  assert.match(outcome, /^(aborted|error)$/);
  assert.ok(took >= 550 && took < 3000, `took ${took} ms`);
  assert.equal(proxy.records.at(-1)!.error, 'MTLS_ERR_UPSTREAM_IDLE_TIMEOUT');
});
