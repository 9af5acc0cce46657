// The upstream pool's limits beyond max_connections and max_pending (keep-alive-reuse.test.ts):
// a request that waits longer than timeouts.connect for a free connection is answered 503, the
// connection that frees up serves the next request, and idle connections are closed after
// pool.idle_timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { proxyFixture } from './support/fixture.ts';
import { request } from './support/proxy.ts';

test('waiting longer than timeouts.connect for a pooled connection answers 503 POOL_ACQUIRE_TIMEOUT', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t, { upstream: { pool: { max_connections: 1 }, timeouts: { connect: '300ms' } } });
  up.handlers.set('/slow', (_req, res) => setTimeout(() => res.end('slow'), 900));
  const slow = request(proxy.port, agent, 'GET', '/slow');
  await sleep(100);
  const waited = await request(proxy.port, agent, 'GET', '/fast');
  assert.equal(waited.status, 503);
  assert.match(waited.body.toString(), /MTLS_ERR_POOL_ACQUIRE_TIMEOUT/);
  assert.equal((await slow).status, 200);
  // the one connection went back to the pool and serves the next request
  assert.equal((await request(proxy.port, agent, 'GET', '/after')).status, 200);
  assert.equal(up.connections, 1);
  const stats = proxy.server.clusters.get('backend')!.report()[0]!;
  assert.deepEqual([stats.size, stats.idle, stats.busy, stats.pending], [1, 1, 0, 0]);
});

test('idle pooled connections are closed after pool.idle_timeout', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t, { upstream: { pool: { idle_timeout: '300ms' } } });
  up.handlers.set('/slow', (_req, res) => setTimeout(() => res.end('slow'), 100));
  const all = await Promise.all(Array.from({ length: 3 }, () => request(proxy.port, agent, 'GET', '/slow')));
  assert.ok(all.every((r) => r.status === 200));
  const cluster = proxy.server.clusters.get('backend')!;
  assert.equal(cluster.report()[0]!.idle, 3);
  for (let i = 0; i < 40 && cluster.report()[0]!.size > 0; i++) await sleep(50);
  const stats = cluster.report()[0]!;
  assert.deepEqual([stats.size, stats.idle, stats.busy], [0, 0, 0]);
  // and a new request opens a fresh one
  assert.equal((await request(proxy.port, agent, 'GET', '/again')).status, 200);
  assert.equal(up.connections, 4);
});
