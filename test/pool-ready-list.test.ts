// The ready list in front of generic-pool (src/pool/endpoint-pool.ts): a connection released
// while nobody waits is handed to the next request synchronously; a borrower queued in
// generic-pool still gets the next released connection; a listed connection the upstream
// closes is never handed out; closing the pool closes the listed connections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { proxyFixture } from './support/fixture.ts';
import { request } from './support/proxy.ts';

test('a released connection goes on the ready list and is taken back synchronously', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t);
  assert.equal((await request(proxy.port, agent, 'GET', '/one')).status, 200);
  const cluster = proxy.server.clusters.get('backend')!;
  const pool = [...cluster.pools()][0]!;
  assert.deepEqual(pool.stats(), { size: 1, idle: 1, busy: 0, pending: 0 });
  const conn = pool.tryAcquire();
  assert.ok(conn !== null, 'the idle connection is handed over without waiting');
  assert.ok(conn.usable);
  assert.deepEqual(pool.stats(), { size: 1, idle: 0, busy: 1, pending: 0 });
  assert.equal(pool.tryAcquire(), null, 'one connection, already taken');
  pool.release(conn);
  // the next request reuses it: still one upstream connection
  assert.equal((await request(proxy.port, agent, 'GET', '/two')).status, 200);
  assert.equal(up.connections, 1);
  assert.deepEqual(pool.stats(), { size: 1, idle: 1, busy: 0, pending: 0 });
});

test('a borrower queued in generic-pool gets the next released connection, not the ready list', async (t) => {
  // max_connections 1: the second request waits in generic-pool's queue. Were the released
  // connection put on the ready list, that waiter would sit until timeouts.connect (503).
  const { up, proxy, agent } = await proxyFixture(t, { upstream: { pool: { max_connections: 1 }, timeouts: { connect: '2s' } } });
  up.handlers.set('/slow', (_req, res) => setTimeout(() => res.end('slow'), 200));
  const t0 = performance.now();
  const both = await Promise.all([request(proxy.port, agent, 'GET', '/slow'), request(proxy.port, agent, 'GET', '/slow')]);
  const elapsed = performance.now() - t0;
  assert.deepEqual(
    both.map((r) => r.status),
    [200, 200],
  );
  assert.ok(elapsed < 1500, `the waiter was served when the connection came back (${elapsed.toFixed(0)} ms)`);
  assert.equal(up.connections, 1);
  const pool = [...proxy.server.clusters.get('backend')!.pools()][0]!;
  assert.deepEqual(pool.stats(), { size: 1, idle: 1, busy: 0, pending: 0 });
});

test('a listed connection the upstream closed is not handed out', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t);
  assert.equal((await request(proxy.port, agent, 'GET', '/one')).status, 200);
  const pool = [...proxy.server.clusters.get('backend')!.pools()][0]!;
  assert.equal(pool.stats().idle, 1);
  for (const s of up.sockets) s.end();
  for (let i = 0; i < 40 && up.sockets.size > 0; i++) await sleep(25);
  await sleep(50);
  assert.equal(pool.tryAcquire(), null, 'the closed connection is dropped, not handed out');
  for (let i = 0; i < 40 && pool.stats().size > 0; i++) await sleep(25);
  assert.equal(pool.stats().size, 0);
  // and the next request opens a fresh one
  assert.equal((await request(proxy.port, agent, 'GET', '/two')).status, 200);
  assert.equal(up.connections, 2);
});

test('closing the pool closes the connections on its ready list', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t);
  await Promise.all([request(proxy.port, agent, 'GET', '/a'), request(proxy.port, agent, 'GET', '/b')]);
  const pool = [...proxy.server.clusters.get('backend')!.pools()][0]!;
  const listed = pool.stats().idle;
  assert.ok(listed >= 1);
  assert.equal(up.sockets.size, listed);
  await pool.close();
  for (let i = 0; i < 40 && up.sockets.size > 0; i++) await sleep(25);
  assert.equal(up.sockets.size, 0, 'the upstream saw every listed connection close');
  assert.equal(pool.stats().size, 0);
  assert.equal(pool.tryAcquire(), null);
});

test('a connection released while paused (its client was behind) reads again: the next response comes in', async (t) => {
  // An exchange pauses its upstream socket while the client is behind and can end paused (the
  // TLS layer delivers a read's remaining records after the pause). Released like that, the next
  // request on the connection was written but its response never read: a 504 after
  // timeouts.response_header.
  const { up, proxy, agent } = await proxyFixture(t, { upstream: { timeouts: { response_header: '1s' } } });
  assert.equal((await request(proxy.port, agent, 'GET', '/one')).status, 200);
  const pool = [...proxy.server.clusters.get('backend')!.pools()][0]!;
  const conn = pool.tryAcquire()!;
  conn.socket!.pause(); // as Exchange.#forwardBody does when the client is behind
  pool.release(conn);
  assert.equal(conn.socket!.isPaused(), false);
  const r = await request(proxy.port, agent, 'GET', '/two');
  assert.equal(r.status, 200, r.body.toString());
  assert.equal(up.connections, 1, 'the same connection carried it');
});
