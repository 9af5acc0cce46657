// The keep-alive race: the upstream closes idle connections after 1 s and requests come
// every ~1 s, so some land on a connection the upstream is closing. A replay-safe request
// that failed before any response byte is retried once on a fresh connection: zero errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { proxyFixture } from './support/fixture.ts';
import { request } from './support/proxy.ts';

test('requests every ~1 s against a 1 s upstream keep-alive timeout: no errors', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t, { upstreamKeepAliveMs: 1000 });
  const statuses: number[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await request(proxy.port, agent, i % 3 === 2 ? 'PUT' : 'GET', `/race${i}`, i % 3 === 2 ? 'idempotent body' : undefined);
    statuses.push(r.status);
    // around the upstream's timeout, so the close and the next request cross
    await new Promise((res) => setTimeout(res, 985 + (i % 4) * 10));
  }
  assert.deepEqual(statuses, Array(12).fill(200), String(statuses));
  assert.ok(up.connections > 1, 'the upstream did close idle connections');
});
