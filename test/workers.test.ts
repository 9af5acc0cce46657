// server.workers = 2, the real bin as a process tree: a primary (request log, admin listener,
// signals) and two workers serving the shared TLS listener. Both workers serve; /metrics and
// /api/* add the workers up; SIGHUP and POST /api/reload swap the certificate in every worker;
// a killed worker is replaced; SIGTERM drains every worker, the in-flight request finishes and
// its row reaches the request log before the primary exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import bcrypt from 'bcrypt';
import Database from 'better-sqlite3';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { startUpstream, type TestUpstream } from './support/upstream.ts';
import { startChildProxy, writeConfig, type ChildProxy } from './support/child-proxy.ts';
import { clientAgent, request } from './support/proxy.ts';
import { runCli } from './support/run-cli.ts';

const PASSWORD = 'workers-test-password';
const HASH = await bcrypt.hash(PASSWORD, 4);
const AUTH = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`;

interface Cluster {
  pki: TestPki;
  up: TestUpstream;
  proxy: ChildProxy;
  adminPort: number;
  dbPath: string;
  api<T>(path: string, method?: string): Promise<T>;
  text(path: string): Promise<{ status: number; body: string }>;
}

interface WorkerStatus { id: number; pid: number; phase: string; open_connections: number; accepted: number }
interface Status { phase: string; open_connections: number; listeners: Array<{ name: string; accepted: number }>; workers: WorkerStatus[] }

async function until<T>(what: string, get: () => Promise<T> | T, ok: (v: T) => boolean, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  let last: T | undefined;
  while (Date.now() < end) {
    try {
      last = await get();
      if (ok(last)) return last;
    } catch {
      // not yet (a worker being replaced, a socket not yet bound)
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: not met in time; last: ${JSON.stringify(last)}`);
}

function configFor(pki: TestPki, upstreamPort: number, server = 'workers = 2'): string {
  const path = writeConfig(pki, upstreamPort, `
[admin]
address = "127.0.0.1:0"
username = "admin"
password_hash = "${HASH}"

[request_log]
path = "requests.sqlite"
`);
  writeFileSync(path, readFileSync(path, 'utf8').replace('[server]\n', `[server]\n${server}\n`));
  return path;
}

async function startCluster(t: test.TestContext): Promise<Cluster> {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startChildProxy(configFor(pki, up.port));
  t.after(async () => {
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const adminPort = Number(/"admin":"127\.0\.0\.1:(\d+)"/.exec(proxy.log())?.[1]);
  assert.ok(adminPort > 0, 'the primary logs its admin address');
  const base = `http://127.0.0.1:${adminPort}`;
  const c: Cluster = {
    pki, up, proxy, adminPort, dbPath: join(pki.dir, 'requests.sqlite'),
    api: async <T>(path: string, method = 'GET'): Promise<T> => {
      const r = await fetch(`${base}${path}`, { method, headers: { authorization: AUTH } });
      assert.equal(r.status, 200, `${method} ${path}`);
      return (await r.json()) as T;
    },
    text: async (path: string) => {
      const r = await fetch(`${base}${path}`);
      return { status: r.status, body: await r.text() };
    },
  };
  await until('both workers ready', () => c.text('/readyz'), (r) => r.status === 200);
  return c;
}

/** The JSON log lines of the whole process tree (primary and workers share stderr). */
function logLines(proxy: ChildProxy): Array<Record<string, unknown>> {
  return proxy.log().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Sums every sample of `name` (label values here hold no spaces). */
function metricSum(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      if (labels !== '' && !line.includes(labels)) continue;
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

function peerFingerprint(port: number, pki: TestPki): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }, () => {
      const fp = s.getPeerX509Certificate()!.fingerprint256;
      s.end();
      s.once('close', () => resolve(fp));
    });
    s.on('error', reject);
  });
}

const acceptedBy = (s: Status): Map<number, number> => new Map(s.workers.map((w) => [w.pid, w.accepted]));

test('workers = 2: both workers serve, /metrics and /api add them up, /api/requests has every request', { timeout: 60_000 }, async (t) => {
  const c = await startCluster(t);
  const status0 = await c.api<Status>('/api/status');
  assert.equal(status0.workers.length, 2);
  assert.equal(new Set(status0.workers.map((w) => w.pid)).size, 2);
  assert.ok(!status0.workers.some((w) => w.pid === c.proxy.child.pid), 'workers are processes of their own');

  // A new connection per request: node:cluster hands connections to the workers in turn.
  const agent = clientAgent(c.pki, false);
  t.after(() => agent.destroy());
  const ids = Array.from({ length: 10 }, (_, i) => `workers-test-${i}`);
  for (const id of ids) {
    const r = await request(c.proxy.port, agent, 'GET', `/item/${id}`, undefined, { 'x-request-id': id });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-request-id'], id);
  }

  // Each worker logs its own requests with its id.
  const served = await until('request log lines of both workers', () => logLines(c.proxy).filter((l) => l.msg === 'request'), (l) => l.length === 10);
  assert.deepEqual(new Set(served.map((l) => l.worker)), new Set([1, 2]), 'both workers served requests');
  const status = await c.api<Status>('/api/status');
  assert.ok(status.workers.every((w) => w.accepted >= 1), `every worker accepted connections: ${JSON.stringify(status.workers)}`);
  assert.equal(status.workers.reduce((n, w) => n + w.accepted, 0), 10);
  assert.equal(status.listeners.find((l) => l.name === 'edge')!.accepted, 10, 'listener counts are the workers\' sum');

  // /metrics: one exposition for the whole proxy.
  const metrics = await until('metrics of all 10 requests', async () => (await c.text('/metrics')).body, (m) => metricSum(m, 'mtls_proxy_requests_total') === 10);
  assert.equal(metricSum(metrics, 'mtls_proxy_requests_total', 'code="200"'), 10);
  assert.equal(metricSum(metrics, 'mtls_proxy_request_duration_seconds_count'), 10);
  assert.equal(metricSum(metrics, 'mtls_proxy_workers'), 2);
  assert.equal(metricSum(metrics, 'mtls_proxy_upstream_endpoint_healthy'), 1, 'health is aggregated by min, not summed');
  assert.ok(metricSum(metrics, 'mtls_proxy_upstream_pool_connections', 'state="idle"') >= 2, 'each worker keeps its own pooled connection, summed');
  assert.equal(
    metricSum(metrics, 'mtls_proxy_certificate_expiry_timestamp_seconds', 'role="listener"'),
    Math.floor(new X509Certificate(c.pki.server.cert).validToDate.getTime() / 1000),
    'expiry is aggregated by min, not summed',
  );
  assert.ok(metricSum(metrics, 'mtls_proxy_process_cpu_seconds_total') > 0);

  // /api/upstreams: pools summed (one connection per worker at least), health merged.
  const ups = await c.api<{ upstreams: Array<{ endpoints: Array<{ healthy: boolean; pool: { size: number } }> }> }>('/api/upstreams');
  assert.equal(ups.upstreams[0]!.endpoints[0]!.healthy, true);
  assert.ok(ups.upstreams[0]!.endpoints[0]!.pool.size >= 2);
  const certs = await c.api<{ certificates: Array<{ role: string; subject: string }> }>('/api/certificates');
  assert.equal(certs.certificates.filter((x) => x.role === 'listener').length, 1, 'one entry per certificate, not per worker');
  assert.ok(certs.certificates.some((x) => x.role === 'client' && x.subject === 'CN=test-client,O=Example'));

  // /api/requests: the primary's request log, one row per request from either worker.
  const rows = await until('10 request log rows', () => c.api<{ requests: Array<{ id: string; status: number; path: string }> }>('/api/requests?limit=100'), (r) => r.requests.length === 10);
  assert.deepEqual(rows.requests.map((r) => r.id).sort(), [...ids].sort());
  for (const r of rows.requests) assert.equal(r.path, `/item/${r.id}`);
});

test('workers = 2: SIGHUP and POST /api/reload swap the listener certificate in every worker', { timeout: 60_000 }, async (t) => {
  const c = await startCluster(t);
  const oldFp = new X509Certificate(c.pki.server.cert).fingerprint256;
  assert.equal(await peerFingerprint(c.proxy.port, c.pki), oldFp);

  const next = await c.pki.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'], usage: ['server'] });
  c.pki.file('server.pem', next.cert);
  c.pki.file('server-key.pem', next.key);
  c.proxy.child.kill('SIGHUP');
  await until('both workers reloaded', () => logLines(c.proxy).filter((l) => l.msg === 'certificates reloaded' && Array.isArray(l.changed) && l.changed.includes('listeners.edge.tls')), (l) => new Set(l.map((x) => x.worker)).size === 2);
  const newFp = new X509Certificate(next.cert).fingerprint256;
  const before = acceptedBy(await c.api<Status>('/api/status'));
  for (let i = 0; i < 6; i++) assert.equal(await peerFingerprint(c.proxy.port, c.pki), newFp, `handshake ${i} sees the new certificate`);
  const after = acceptedBy(await c.api<Status>('/api/status'));
  for (const [pid, n] of after) assert.ok(n > (before.get(pid) ?? 0), `worker ${pid} took some of those handshakes`);

  // POST /api/reload: the same in every worker, answered with each worker's report.
  const third = await c.pki.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'], usage: ['server'] });
  c.pki.file('server.pem', third.cert);
  c.pki.file('server-key.pem', third.key);
  const report = await c.api<{ changed: string[]; errors: unknown[]; workers: Array<{ pid: number; changed: string[] }> }>('/api/reload', 'POST');
  assert.deepEqual(report.changed, ['listeners.edge.tls']);
  assert.deepEqual(report.errors, []);
  assert.equal(report.workers.length, 2);
  for (const w of report.workers) assert.deepEqual(w.changed, ['listeners.edge.tls']);
  const thirdFp = new X509Certificate(third.cert).fingerprint256;
  for (let i = 0; i < 4; i++) assert.equal(await peerFingerprint(c.proxy.port, c.pki), thirdFp);
});

test('workers = 2: a killed worker is logged and replaced, and the proxy keeps serving', { timeout: 60_000 }, async (t) => {
  const c = await startCluster(t);
  const before = await c.api<Status>('/api/status');
  const victim = before.workers[0]!;
  process.kill(victim.pid, 'SIGKILL');
  const after = await until('a replacement worker', () => c.api<Status>('/api/status'), (s) => s.workers.length === 2 && !s.workers.some((w) => w.pid === victim.pid) && s.workers.every((w) => w.phase === 'running'));
  assert.ok(after.workers.some((w) => w.id > before.workers[1]!.id), 'the replacement has a new worker id');
  const died = logLines(c.proxy).find((l) => l.msg === 'worker died; replacing it');
  assert.ok(died, 'the death is logged');
  assert.equal(died.pid, victim.pid);
  assert.equal(died.signal, 'SIGKILL');
  await until('ready again', () => c.text('/readyz'), (r) => r.status === 200);
  const metrics = (await c.text('/metrics')).body;
  assert.equal(metricSum(metrics, 'mtls_proxy_worker_restarts_total'), 1);

  const agent = clientAgent(c.pki, false);
  t.after(() => agent.destroy());
  for (let i = 0; i < 4; i++) assert.equal((await request(c.proxy.port, agent, 'GET', `/after-kill/${i}`)).status, 200);
  const status = await c.api<Status>('/api/status');
  assert.ok(status.workers.every((w) => w.accepted >= 1), 'both, the replacement too, serve');
});

test('workers = 2: SIGTERM drains every worker, the in-flight request finishes and is logged, exit 0', { timeout: 60_000 }, async (t) => {
  const c = await startCluster(t);
  c.up.handlers.set('/slow', (_req, res) => setTimeout(() => res.end('finished'), 700));
  const agent = clientAgent(c.pki);
  t.after(() => agent.destroy());
  const inFlight = request(c.proxy.port, agent, 'GET', '/slow', undefined, { 'x-request-id': 'in-flight-at-sigterm' });
  await until('the request reached the upstream', () => c.up.seen.length, (n) => n === 1);
  await new Promise((r) => setTimeout(r, 100));
  c.proxy.child.kill('SIGTERM');
  // While draining, the admin listener still answers: not ready. (The signal is delivered
  // asynchronously: the first /readyz may be answered before the primary has seen it.)
  const ready = await until('/readyz answers 503 while draining', () => c.text('/readyz'), (x) => x.status === 503, 5000);
  assert.equal(ready.status, 503);
  assert.match(ready.body, /draining/);
  const r = await inFlight;
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'finished');
  assert.equal(r.headers.connection, 'close');
  assert.equal(await c.proxy.exited, 0);
  const lines = logLines(c.proxy);
  assert.deepEqual(new Set(lines.filter((l) => l.msg === 'stopped' && l.worker !== undefined).map((l) => l.worker)), new Set([1, 2]), 'every worker drained and stopped');
  assert.ok(lines.some((l) => l.msg === 'stopped' && l.worker === undefined), 'then the primary');
  await assert.rejects(request(c.proxy.port, clientAgent(c.pki), 'GET', '/late'));
  // The worker's last batch reached the primary before it closed the request log.
  const db = new Database(c.dbPath, { readonly: true });
  try {
    const row = db.prepare('SELECT path, status FROM requests WHERE id = ?').get('in-flight-at-sigterm');
    assert.deepEqual(row, { path: '/slow', status: 200 });
  } finally {
    db.close();
  }
});

test('workers = 2: a worker that cannot bind fails the start with exit 1 and one line', { timeout: 60_000 }, async (t) => {
  const pki = await makeTestPki();
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    taken.close();
    pki.cleanup();
  });
  const port = (taken.address() as net.AddressInfo).port;
  const path = configFor(pki, 9);
  writeFileSync(path, readFileSync(path, 'utf8').replace('address = "127.0.0.1:0"\nupstream', `address = "127.0.0.1:${port}"\nupstream`));
  const result = await runCli(['start', '-c', path]);
  assert.equal(result.code, 1);
  const errors = result.stderr.split('\n').filter((l) => l.startsWith('error: '));
  assert.equal(errors.length, 1, result.stderr);
  assert.match(errors[0]!, new RegExp(`^error: .*EADDRINUSE.*127\\.0\\.0\\.1:${port}`));
  assert.doesNotMatch(result.stderr, /\n\s+at /, 'no stack trace');
});

/** LISTEN sockets on 127.0.0.1:port, from /proc/net/tcp (one per SO_REUSEPORT socket). */
function listenSockets(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').filter((l) => {
    const f = l.trim().split(/\s+/);
    return f[1] === local && f[3] === '0A';
  }).length;
}

test('workers = 2 on a fixed port: one SO_REUSEPORT socket per worker, connections reach both', { timeout: 60_000 }, async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => { resolve(); }));
  const path = configFor(pki, up.port);
  writeFileSync(path, readFileSync(path, 'utf8').replace('address = "127.0.0.1:0"\nupstream', `address = "127.0.0.1:${port}"\nupstream`));
  const proxy = await startChildProxy(path);
  const agent = clientAgent(pki, false);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const adminPort = Number(/"admin":"127\.0\.0\.1:(\d+)"/.exec(proxy.log())?.[1]);
  const status = async (): Promise<Status> => {
    const r = await fetch(`http://127.0.0.1:${adminPort}/api/status`, { headers: { authorization: AUTH } });
    return (await r.json()) as Status;
  };
  await until('both workers running', status, (s) => s.workers.length === 2 && s.workers.every((w) => w.phase === 'running'));
  // node:cluster's round-robin would show one socket, the primary's
  assert.equal(listenSockets(port), 2);
  for (let i = 0; i < 24; i++) assert.equal((await request(port, agent, 'GET', `/r${i}`)).status, 200);
  const s = await until('the accepts counted', status, (v) => v.workers.reduce((n, w) => n + w.accepted, 0) >= 24);
  for (const w of s.workers) assert.ok(w.accepted > 0, `worker ${w.id} accepted ${w.accepted} of 24 connections`);
});
