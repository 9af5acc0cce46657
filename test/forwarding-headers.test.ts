// What the upstream sees and what the client gets back: egress mTLS, XFCC (client copy
// stripped), X-Forwarded-For/-Proto, X-Request-Id kept/replaced/echoed, hop-by-hop removal.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { startUpstream, type TestUpstream } from './support/upstream.ts';
import { startProxy, clientAgent, request, type TestProxy } from './support/proxy.ts';
import { parseXfcc } from '../src/net/identity.ts';
import type https from 'node:https';

let pki: TestPki;
let up: TestUpstream;
let proxy: TestProxy;
let agent: https.Agent;

before(async () => {
  pki = await makeTestPki();
  up = await startUpstream(pki);
  proxy = await startProxy(pki, up.port);
  agent = clientAgent(pki);
});
after(async () => {
  agent.destroy();
  await proxy.stop();
  await up.close();
  pki.cleanup();
});

test('the upstream sees the proxy client certificate (egress mTLS)', async () => {
  const r = await request(proxy.port, agent, 'GET', '/who');
  assert.equal(r.status, 200);
  assert.equal(up.seen.at(-1)!.peerCN, 'proxy');
});

test('XFCC carries the client identity; a client-sent XFCC is removed first', async () => {
  const r = await request(proxy.port, agent, 'GET', '/xfcc', undefined, { 'x-forwarded-client-cert': 'Hash=forged;Subject="CN=admin"' });
  assert.equal(r.status, 200);
  const raw = up.seen.at(-1)!.rawHeaders;
  const xfcc = raw.filter((_, i) => i % 2 === 0 && raw[i]!.toLowerCase() === 'x-forwarded-client-cert');
  assert.equal(xfcc.length, 1, 'exactly one XFCC header');
  const value = String(up.seen.at(-1)!.headers['x-forwarded-client-cert']);
  assert.ok(!value.includes('forged'));
  const [element] = parseXfcc(value);
  const fields = new Map(element);
  assert.equal(fields.get('Subject'), 'CN=test-client,O=Example');
  assert.match(fields.get('Hash') ?? '', /^[0-9a-f]{64}$/);
  assert.equal(fields.get('URI'), 'spiffe://test/client');
  assert.equal(fields.get('DNS'), 'client.internal');
  const rec = proxy.records.at(-1)!;
  assert.equal(rec.clientSubject, 'CN=test-client,O=Example');
  assert.equal(rec.clientSha256, fields.get('Hash'));
});

test('X-Forwarded-For is appended, X-Forwarded-Proto is set', async () => {
  await request(proxy.port, agent, 'GET', '/xff', undefined, { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'http' });
  const h = up.seen.at(-1)!.headers;
  assert.equal(h['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'https');
});

test('a valid client X-Request-Id is kept and echoed; an invalid one is replaced', async () => {
  const ok = await request(proxy.port, agent, 'GET', '/id', undefined, { 'x-request-id': 'abc.DEF:123-_' });
  assert.equal(ok.headers['x-request-id'], 'abc.DEF:123-_');
  assert.equal(up.seen.at(-1)!.headers['x-request-id'], 'abc.DEF:123-_');
  assert.equal(proxy.records.at(-1)!.id, 'abc.DEF:123-_');
  const bad = await request(proxy.port, agent, 'GET', '/id', undefined, { 'x-request-id': 'has space<script>' });
  const id = String(bad.headers['x-request-id']);
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.equal(up.seen.at(-1)!.headers['x-request-id'], id);
  const long = await request(proxy.port, agent, 'GET', '/id', undefined, { 'x-request-id': 'a'.repeat(129) });
  assert.match(String(long.headers['x-request-id']), /^[0-9a-f-]{36}$/);
});

test('hop-by-hop headers are removed toward the upstream, with the ones Connection names', async () => {
  await request(proxy.port, agent, 'GET', '/hop', undefined, { connection: 'keep-alive, X-Secret-Hop', 'x-secret-hop': '1', 'keep-alive': 'timeout=5', te: 'trailers', 'proxy-authorization': 'Basic eA==', 'x-end-to-end': 'yes' });
  const h = up.seen.at(-1)!.headers;
  for (const name of ['connection', 'x-secret-hop', 'keep-alive', 'te', 'proxy-authorization']) assert.equal(h[name], undefined, name);
  assert.equal(h['x-end-to-end'], 'yes');
});

test('hop-by-hop headers are removed toward the client', async () => {
  up.handlers.set('/resp-hop', (_req, res) => {
    res.writeHead(200, { connection: 'X-Upstream-Hop', 'x-upstream-hop': '1', 'keep-alive': 'timeout=1', 'proxy-authenticate': 'Basic', 'x-request-id': 'upstream-own', 'content-length': '2' });
    res.end('ok');
  });
  const r = await request(proxy.port, agent, 'GET', '/resp-hop');
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'ok');
  for (const name of ['x-upstream-hop', 'keep-alive', 'proxy-authenticate']) assert.equal(r.headers[name], undefined, name);
  assert.notEqual(r.headers['x-request-id'], 'upstream-own');
});

test('the request log record has the contract columns', async () => {
  await request(proxy.port, agent, 'POST', '/rec?q=1', 'hello');
  const rec = proxy.records.at(-1)!;
  assert.equal(rec.listener, 'edge');
  assert.equal(rec.method, 'POST');
  assert.equal(rec.path, '/rec');
  assert.equal(rec.status, 200);
  assert.equal(rec.upstream, 'backend');
  assert.equal(rec.endpoint, `127.0.0.1:${up.port}`);
  assert.equal(rec.clientAddr, '127.0.0.1');
  assert.ok(rec.bytesIn >= 5);
  assert.ok(rec.bytesOut > 0);
  assert.ok(rec.durationMs >= 0);
  assert.equal(rec.error, null);
});
