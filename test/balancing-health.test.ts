// Round-robin across endpoints; a failed connect takes an endpoint out (passive); the active
// health check takes a failing endpoint out after unhealthy_threshold and back after
// healthy_threshold.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeTestPki } from './support/pki.ts';
import { startUpstream } from './support/upstream.ts';
import { startProxy, clientAgent, request } from './support/proxy.ts';

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('round-robin over two endpoints', async (t) => {
  const pki = await makeTestPki();
  const a = await startUpstream(pki);
  const b = await startUpstream(pki);
  const proxy = await startProxy(pki, a.port, { endpoints: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`] });
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await a.close();
    await b.close();
    pki.cleanup();
  });
  for (let i = 0; i < 10; i++) assert.equal((await request(proxy.port, agent, 'GET', `/${i}`)).status, 200);
  assert.equal(a.seen.length, 5);
  assert.equal(b.seen.length, 5);
});

test('active health check: failing endpoint leaves rotation, returns when healthy again', async (t) => {
  const pki = await makeTestPki();
  const a = await startUpstream(pki);
  const b = await startUpstream(pki);
  let bHealthy = true;
  b.handlers.set('/healthz', (_req, res) => {
    res.writeHead(bHealthy ? 200 : 503);
    res.end();
  });
  a.handlers.set('/healthz', (_req, res) => res.end('ok'));
  const proxy = await startProxy(pki, a.port, {
    endpoints: [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`],
    upstream: { health_check: { path: '/healthz', interval: '50ms', timeout: '500ms', unhealthy_threshold: 2, healthy_threshold: 2 } },
  });
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await a.close();
    await b.close();
    pki.cleanup();
  });
  const cluster = proxy.server.clusters.get('backend')!;
  const bKey = `127.0.0.1:${b.port}`;
  const healthOf = (key: string): boolean => cluster.report().find((e) => e.endpoint === key)!.healthy;
  bHealthy = false;
  await until(() => !healthOf(bKey));
  const before = b.seen.filter((s) => s.url !== '/healthz').length;
  for (let i = 0; i < 6; i++) assert.equal((await request(proxy.port, agent, 'GET', `/traffic${i}`)).status, 200);
  assert.equal(b.seen.filter((s) => s.url !== '/healthz').length, before, 'unhealthy endpoint got traffic');
  bHealthy = true;
  await until(() => healthOf(bKey));
  for (let i = 0; i < 6; i++) await request(proxy.port, agent, 'GET', `/back${i}`);
  assert.ok(b.seen.some((s) => s.url.startsWith('/back')), 'healthy-again endpoint got no traffic');
});
