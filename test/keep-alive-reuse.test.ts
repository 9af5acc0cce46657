// Pooled upstream connections are reused: the upstream sees fewer connections than requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { proxyFixture } from './support/fixture.ts';
import { request } from './support/proxy.ts';

test('30 sequential requests over keep-alive use one upstream connection', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t);
  for (let i = 0; i < 30; i++) {
    const r = await request(proxy.port, agent, i % 2 ? 'POST' : 'GET', `/r${i}`, i % 2 ? `body${i}` : undefined);
    assert.equal(r.status, 200);
  }
  assert.equal(up.seen.length, 30);
  assert.equal(up.connections, 1);
  const stats = proxy.server.clusters.get('backend')!.report()[0]!;
  assert.equal(stats.idle, 1);
  assert.equal(stats.busy, 0);
});

test('concurrent requests open up to max_connections, then queue', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t, { upstream: { pool: { max_connections: 3 } } });
  up.handlers.set('/slow', (_req, res) => setTimeout(() => res.end('slow'), 100));
  const all = await Promise.all(Array.from({ length: 12 }, () => request(proxy.port, agent, 'GET', '/slow')));
  assert.ok(all.every((r) => r.status === 200 && r.body.toString() === 'slow'));
  assert.ok(up.connections <= 3, `upstream saw ${up.connections} connections`);
});

test('a full pending queue answers 503', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t, { upstream: { pool: { max_connections: 1, max_pending: 1 } } });
  up.handlers.set('/slow', (_req, res) => setTimeout(() => res.end('slow'), 300));
  const all = await Promise.all(Array.from({ length: 4 }, () => request(proxy.port, agent, 'GET', '/slow')));
  const codes = all.map((r) => r.status).sort();
  assert.ok(codes.filter((c) => c === 200).length >= 2, `${codes} ${all.map((r) => r.body.toString()).join("|")}`);
  assert.ok(codes.includes(503), `${codes} ${all.map((r) => r.body.toString()).join("|")}`);
  const refused = all.find((r) => r.status === 503)!;
  assert.match(refused.body.toString(), /MTLS_ERR_POOL_QUEUE_FULL/);
});
