// Routes: first match on host (exact or *.suffix) and path prefix; strip_prefix; none
// matching -> the listener's upstream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeTestPki } from './support/pki.ts';
import { startUpstream } from './support/upstream.ts';
import { startProxy, clientAgent, request } from './support/proxy.ts';
import { Router } from '../src/http/router.ts';

test('router unit: host exact and wildcard, prefix, strip, fallback', () => {
  const r = new Router(
    [
      { host: 'api.example.com', pathPrefix: '/v1/', upstream: 'v1', stripPrefix: true },
      { host: '*.example.com', pathPrefix: null, upstream: 'wild', stripPrefix: false },
      { host: null, pathPrefix: '/static', upstream: 'static', stripPrefix: true },
    ],
    'default',
  );
  assert.deepEqual(r.match('api.example.com', '/v1/users?x=1'), { upstream: 'v1', target: '/users?x=1' });
  assert.deepEqual(r.match('API.Example.com:8443', '/v1/x'), { upstream: 'v1', target: '/x' });
  assert.deepEqual(r.match('api.example.com', '/v2/x'), { upstream: 'wild', target: '/v2/x' });
  assert.deepEqual(r.match('a.b.example.com', '/x'), { upstream: 'wild', target: '/x' });
  assert.deepEqual(r.match('example.com', '/x'), { upstream: 'default', target: '/x' });
  assert.deepEqual(r.match('other', '/static'), { upstream: 'static', target: '/' });
  assert.deepEqual(r.match('other', '/static/app.js'), { upstream: 'static', target: '/app.js' });
  assert.deepEqual(r.match('[::1]:443', '/x'), { upstream: 'default', target: '/x' });
});

test('requests reach the upstream their route names, with the prefix stripped when asked', async (t) => {
  const pki = await makeTestPki();
  const main = await startUpstream(pki);
  const api = await startUpstream(pki);
  const proxy = await startProxy(pki, main.port, {
    listener: { routes: [{ host: 'api.local', path_prefix: '/v1/', upstream: 'api', strip_prefix: true }, { path_prefix: '/keep/', upstream: 'api' }] },
    upstreams: {
      api: {
        endpoints: [`127.0.0.1:${api.port}`],
        tls: { cert: pki.file('proxy.pem', pki.proxyClient.cert), key: pki.file('proxy-key.pem', pki.proxyClient.key), ca: pki.file('ca.pem', pki.ca.cert), server_name: 'localhost' },
      },
    },
  });
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await main.close();
    await api.close();
    pki.cleanup();
  });
  await request(proxy.port, agent, 'GET', '/v1/orders?id=7', undefined, { host: 'api.local' });
  assert.equal(api.seen.at(-1)!.url, '/orders?id=7');
  assert.equal(api.seen.at(-1)!.headers.host, 'api.local');
  assert.equal(proxy.records.at(-1)!.upstream, 'api');
  await request(proxy.port, agent, 'GET', '/keep/this', undefined, { host: 'anything' });
  assert.equal(api.seen.at(-1)!.url, '/keep/this');
  await request(proxy.port, agent, 'GET', '/v1/orders', undefined, { host: 'other.local' });
  assert.equal(main.seen.at(-1)!.url, '/v1/orders');
  assert.equal(proxy.records.at(-1)!.upstream, 'backend');
  assert.equal(api.seen.length, 2);
});
