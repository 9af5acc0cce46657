// The admin API against a real running proxy: each endpoint's shape after proxied traffic,
// readiness through a drain, the effective config without secrets, a reload that a new
// handshake sees, and the refusals (400, 404, 405, 413, 403, 500) as JSON without a stack.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import bcrypt from 'bcrypt';
import pino from 'pino';
import type { RequestLogFilter, RequestLogLike, RequestLogRow } from '../src/admin/api.ts';
import { AdminServer } from '../src/admin/server.ts';
import type { ProxyView } from '../src/admin/types.ts';
import type { Config } from '../src/config/types.ts';
import type { RequestRecord } from '../src/http/context.ts';
import { silentLogger, type Logger } from '../src/log.ts';
import type { ProxyServer } from '../src/server.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { clientAgent, request, startProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type TestUpstream } from './support/upstream.ts';

const PASSWORD = 'admin-test-password';
const HASH = await bcrypt.hash(PASSWORD, 4);
const AUTH = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`;

const SOCKET_RESOURCES = new Set(['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap']);
const openSockets = (): number => process.getActiveResourcesInfo().filter((r) => SOCKET_RESOURCES.has(r)).length;
const baseline = openSockets();

/** The request log's query, over the proxy's own records: what the SQLite log would hold. */
class RecordsLog implements RequestLogLike {
  readonly filters: RequestLogFilter[] = [];
  readonly #records: RequestRecord[];
  constructor(records: RequestRecord[]) {
    this.#records = records;
  }
  query(f: RequestLogFilter): Promise<RequestLogRow[]> {
    this.filters.push(f);
    return Promise.resolve(this.#records
      .filter((r) => (typeof f.status === 'number' ? r.status === f.status : f.status === undefined || Math.floor(r.status / 100) === f.status.class))
      .filter((r) => (f.since === undefined || r.ts >= f.since) && (f.upstream === undefined || r.upstream === f.upstream))
      .filter((r) => (f.listener === undefined || r.listener === f.listener) && (f.clientSubject === undefined || r.clientSubject === f.clientSubject))
      .sort((a, b) => b.ts - a.ts)
      .slice(0, f.limit)
      .map((r) => ({
        id: r.id, ts: r.ts, listener: r.listener, client_addr: r.clientAddr, client_subject: r.clientSubject, client_sha256: r.clientSha256,
        method: r.method, host: r.host, path: r.path, status: r.status, upstream: r.upstream, endpoint: r.endpoint,
        bytes_in: r.bytesIn, bytes_out: r.bytesOut, duration_ms: r.durationMs, error: r.error, internal_rowid: 7,
      })));
  }
}

/** The proxy as the admin plane sees it, with the admin section its config would carry. */
function viewOf(server: ProxyServer, config: Config, overrides: Partial<ProxyView> = {}): ProxyView {
  return {
    get version() { return server.version; },
    get startedAt() { return server.startedAt; },
    get phase() { return server.phase; },
    config,
    listeners: () => server.listeners(),
    upstreams: () => server.upstreams(),
    certificates: () => server.certificates(),
    readiness: () => server.readiness(),
    reload: () => server.reload(),
    ...overrides,
  };
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface CallOptions {
  method?: string;
  auth?: string | null;
  headers?: Record<string, string>;
  body?: string;
}

function call(port: number, path: string, opts: CallOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    const auth = opts.auth === undefined ? AUTH : opts.auth;
    if (auth !== null) headers.authorization = auth;
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function json<T = Record<string, unknown>>(port: number, path: string, opts: CallOptions = {}): Promise<{ status: number; body: T; reply: Reply }> {
  const reply = await call(port, path, opts);
  assert.match(reply.headers['content-type'] ?? '', /^application\/json/, `${path}: ${reply.body}`);
  return { status: reply.status, body: JSON.parse(reply.body) as T, reply };
}

/** Raw bytes to the admin port; everything until the server closes (or `waitMs`). */
async function raw(port: number, bytes: string, waitMs = 2000): Promise<string> {
  const s = net.connect({ host: '127.0.0.1', port });
  await once(s, 'connect');
  s.write(bytes);
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  const timer = setTimeout(() => s.destroy(), waitMs);
  await new Promise((resolve) => { s.on('close', resolve); s.on('error', resolve); });
  clearTimeout(timer);
  return Buffer.concat(parts).toString('latin1');
}

interface Fixture {
  pki: TestPki;
  upstream: TestUpstream;
  proxy: TestProxy;
  config: Config;
  log: RecordsLog;
  dir: string;
  port: number;
  admin: AdminServer;
}

async function setup(t: test.TestContext, opts: { logger?: Logger; view?: Partial<ProxyView>; requestLog?: boolean } = {}): Promise<Fixture> {
  const pki = await makeTestPki();
  const upstream = await startUpstream(pki);
  const proxy = await startProxy(pki, upstream.port);
  const dir = mkdtempSync(join(tmpdir(), 'admin-api-'));
  const dashboard = join(dir, 'dashboard');
  mkdirSync(join(dashboard, 'assets'), { recursive: true });
  writeFileSync(join(dashboard, 'index.html'), '<!doctype html><title>mtls-proxy</title><script src="assets/app.js"></script>');
  writeFileSync(join(dashboard, 'assets', 'app.js'), 'console.log("dashboard");\n');
  writeFileSync(join(dashboard, 'assets', 'app.css'), 'body { margin: 0 }\n');
  writeFileSync(join(dashboard, 'assets', '.env'), 'SECRET=1\n');
  writeFileSync(join(dir, 'secret.txt'), 'outside the dashboard\n');
  symlinkSync(join(dir, 'secret.txt'), join(dashboard, 'assets', 'link.txt'));
  const adminConfig = { address: { host: '127.0.0.1', port: 0 }, username: 'admin', passwordHash: HASH };
  const config: Config = { ...proxy.server.config, admin: adminConfig, requestLog: { path: join(dir, 'requests.db'), retentionMs: 7 * 86_400_000, maxRows: 1000 } };
  const log = new RecordsLog(proxy.records);
  const admin = new AdminServer({
    config: adminConfig, view: viewOf(proxy.server, config, opts.view), metrics: null,
    requestLog: opts.requestLog === false ? null : log, logger: opts.logger ?? silentLogger, dashboardDir: dashboard,
  });
  const { port } = await admin.listen();
  t.after(async () => {
    await admin.close();
    await proxy.stop();
    await upstream.close();
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });
  return { pki, upstream, proxy, config, log, dir, port, admin };
}

async function traffic(f: Fixture, n: number): Promise<string[]> {
  const agent = clientAgent(f.pki);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await request(f.proxy.port, agent, 'GET', `/item/${i}`);
    assert.equal(r.status, 200);
    ids.push(String(r.headers['x-request-id']));
  }
  agent.destroy();
  return ids;
}

test.after(async () => {
  await new Promise((resolve) => setTimeout(resolve, 20)); // libuv closes handles a loop turn after 'close'
  assert.equal(openSockets(), baseline, 'no socket left open');
});

test('GET /api/status: version, phase, uptime, listeners with their counters', async (t) => {
  const f = await setup(t);
  await traffic(f, 3);
  const { status, body } = await json(f.port, '/api/status');
  assert.equal(status, 200);
  assert.equal(body.version, f.proxy.server.version);
  assert.equal(body.phase, 'running');
  assert.equal(body.started_at, new Date(f.proxy.server.startedAt).toISOString());
  assert.equal(typeof body.uptime_seconds, 'number');
  assert.equal(typeof body.open_connections, 'number');
  const [edge] = body.listeners as Array<Record<string, unknown>>;
  assert.deepEqual(Object.keys(edge!), ['name', 'mode', 'address', 'upstream', 'open_connections', 'accepted', 'refused', 'tls_errors']);
  assert.equal(edge!.name, 'edge');
  assert.equal(edge!.mode, 'http');
  assert.equal(edge!.address, `127.0.0.1:${f.proxy.port}`);
  assert.equal(edge!.upstream, 'backend');
  assert.ok((edge!.accepted as number) >= 1);
  assert.deepEqual(edge!.tls_errors, {});
});

test('GET /api/upstreams: each endpoint with health, last error and pool use', async (t) => {
  const f = await setup(t);
  await traffic(f, 2);
  const { status, body } = await json(f.port, '/api/upstreams');
  assert.equal(status, 200);
  assert.deepEqual(body, {
    upstreams: [{
      name: 'backend',
      endpoints: [{ endpoint: `127.0.0.1:${f.upstream.port}`, healthy: true, last_error: null, pool: { size: 1, idle: 1, busy: 0, pending: 0 } }],
    }],
  });
});

test('GET /api/requests: rows newest first with ISO times and the id the client saw; filters validated and passed on', async (t) => {
  const f = await setup(t);
  const ids = await traffic(f, 3);
  const { status, body } = await json<{ requests: Array<Record<string, unknown>> }>(f.port, '/api/requests');
  assert.equal(status, 200);
  assert.deepEqual(body.requests.map((r) => r.id), [...ids].reverse());
  const row = body.requests[0]!;
  assert.deepEqual(Object.keys(row), ['id', 'ts', 'listener', 'client_addr', 'client_subject', 'client_sha256', 'method', 'host', 'path',
    'status', 'upstream', 'endpoint', 'bytes_in', 'bytes_out', 'duration_ms', 'error'], 'documented columns only');
  assert.match(String(row.ts), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.equal(row.path, '/item/2');
  assert.equal(row.status, 200);
  assert.equal(row.client_subject, 'CN=test-client,O=Example');
  assert.equal(f.log.filters.at(-1)?.limit, 100, 'default limit');

  const since = '2020-01-02T03:04:05Z';
  const filtered = await json<{ requests: unknown[] }>(f.port, `/api/requests?limit=5000&status=2xx&since=${since}&upstream=backend&listener=edge&client_subject=${encodeURIComponent('CN=test-client,O=Example')}`);
  assert.equal(filtered.status, 200);
  assert.equal(filtered.body.requests.length, 3);
  assert.deepEqual(f.log.filters.at(-1), { limit: 1000, status: { class: 2 }, since: Date.parse(since), upstream: 'backend', listener: 'edge', clientSubject: 'CN=test-client,O=Example' });

  await json(f.port, '/api/requests?status=404&since=1700000000000&limit=2');
  assert.deepEqual(f.log.filters.at(-1), { limit: 2, status: 404, since: 1_700_000_000_000 });
  await json(f.port, '/api/requests?since=2025-01-31T12:00:00%2B02:00');
  assert.equal(f.log.filters.at(-1)?.since, Date.parse('2025-01-31T10:00:00Z'));
  await json(f.port, '/api/requests?since=2025-01-31T12:00');
  assert.equal(f.log.filters.at(-1)?.since, Date.parse('2025-01-31T12:00:00Z'), 'no offset means UTC');
});

test('GET /api/requests without a request log: no rows, enabled false', async (t) => {
  const f = await setup(t, { requestLog: false });
  assert.deepEqual((await json(f.port, '/api/requests')).body, { requests: [], enabled: false });
  assert.equal((await json(f.port, '/api/requests?limit=x')).status, 400, 'still validated');
});

test('bad /api/requests query values: 400 JSON naming the parameter', async (t) => {
  const f = await setup(t);
  const cases: Array<[string, string]> = [
    ['limit=abc', 'limit'], ['limit=-1', 'limit'], ['limit=0', 'limit'], ['limit=1.5', 'limit'], ['limit=', 'limit'],
    ['status=600', 'status'], ['status=20', 'status'], ['status=2xy', 'status'], ['status=abc', 'status'],
    ['since=yesterday', 'since'], ['since=2025-02-30', 'since'], ['since=-5', 'since'], ['since=2025-01-31T25:00Z', 'since'],
    ['upstream=', 'upstream'], ['client_subject=', 'client_subject'], [`listener=${'x'.repeat(2000)}`, 'listener'],
    ['limit=1&limit=2', 'limit'], ['sort=ts', 'sort'], ['Limit=5', 'Limit'],
  ];
  for (const [query, name] of cases) {
    const { status, body } = await json<{ error: string; message: string }>(f.port, `/api/requests?${query}`);
    assert.equal(status, 400, query);
    assert.equal(body.error, 'bad_request');
    assert.ok(body.message.includes(`"${name}"`), `${query}: ${body.message}`);
  }
});

test('GET /api/certificates: every certificate with role, SANs, issuer, expiry and fingerprint, soonest first', async (t) => {
  const f = await setup(t);
  await traffic(f, 1);
  const { status, body } = await json<{ certificates: Array<Record<string, unknown>> }>(f.port, '/api/certificates');
  assert.equal(status, 200);
  const certs = body.certificates;
  assert.deepEqual(new Set(certs.map((c) => c.role)), new Set(['listener', 'client-ca', 'upstream-client', 'upstream-ca', 'client']));
  const days = certs.map((c) => c.days_left as number);
  assert.deepEqual(days, [...days].sort((a, b) => a - b));
  const listener = certs.find((c) => c.role === 'listener')!;
  assert.equal(listener.owner, 'edge');
  assert.equal(listener.subject, 'CN=localhost');
  assert.deepEqual(listener.sans, ['DNS:localhost', 'IP:127.0.0.1']);
  assert.equal(listener.sha256, new X509Certificate(f.pki.server.cert).fingerprint256.replaceAll(':', '').toLowerCase());
  assert.match(String(listener.not_after), /Z$/);
  const client = certs.find((c) => c.role === 'client')!;
  assert.equal(client.subject, 'CN=test-client,O=Example');
});

test('GET /api/config: TOML-shaped, units formatted, paths shown, no key material, no password hash', async (t) => {
  const f = await setup(t);
  const reply = await call(f.port, '/api/config');
  assert.equal(reply.status, 200);
  assert.ok(!reply.body.includes('BEGIN'), 'no PEM');
  assert.ok(!reply.body.includes(HASH) && !reply.body.includes('$2b$'), 'no hash');
  const body = JSON.parse(reply.body) as Record<string, Record<string, unknown>>;
  assert.deepEqual(Object.keys(body), ['server', 'admin', 'log', 'request_log', 'listeners', 'upstreams']);
  assert.deepEqual(body.server, { drain_timeout: '5s', workers: 1 });
  assert.deepEqual(body.admin, { address: '127.0.0.1:0', username: 'admin', password_hash: '[redacted]' });
  assert.deepEqual(body.request_log, { path: join(f.dir, 'requests.db'), retention: '7d', max_rows: 1000 });
  const edge = body.listeners!.edge as Record<string, Record<string, unknown>>;
  assert.equal(edge.tls!.cert, join(f.pki.dir, 'server.pem'));
  assert.equal(edge.tls!.key, join(f.pki.dir, 'server-key.pem'));
  assert.equal(edge.tls!.client_auth, 'optional');
  assert.deepEqual(edge.limits, { max_header_size: '64KiB', max_headers: 100, max_uri_length: '8KiB', header_timeout: '5s', idle_timeout: '1m' });
  const backend = body.upstreams!.backend as Record<string, unknown>;
  assert.deepEqual(backend.endpoints, [`127.0.0.1:${f.upstream.port}`]);
  assert.equal(backend.health_check, null);
  assert.deepEqual(backend.timeouts, { connect: '2s', response_header: '30s', idle: '1m' });
});

test('GET /readyz: 200 while running, 503 while draining; the admin listener stays up', async (t) => {
  const f = await setup(t);
  assert.deepEqual((await json(f.port, '/readyz', { auth: null })).body, { ready: true, reasons: [] });
  // Held open, so the drain has something to wait for.
  const held = tls.connect({ host: '127.0.0.1', port: f.proxy.port, servername: 'localhost', ca: f.pki.ca.cert, cert: f.pki.client.cert, key: f.pki.client.key });
  await once(held, 'secureConnect');
  const draining = f.proxy.server.shutdown();
  const r = await json<{ ready: boolean; reasons: string[] }>(f.port, '/readyz', { auth: null });
  assert.equal(r.status, 503);
  assert.equal(r.body.ready, false);
  assert.ok(r.body.reasons.includes('draining'), r.body.reasons.join('; '));
  assert.equal((await json(f.port, '/api/status')).body.phase, 'draining');
  assert.equal((await call(f.port, '/healthz', { auth: null })).status, 200);
  held.destroy();
  await draining;
  assert.equal((await json(f.port, '/readyz', { auth: null })).status, 503);
  assert.equal((await json(f.port, '/api/status')).body.phase, 'stopped');
});

test('POST /api/reload after swapping the listener certificate: reported as changed, and a new handshake sees it', async (t) => {
  const f = await setup(t);
  const next = await f.pki.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'], usage: ['server'] });
  f.pki.file('server.pem', next.cert);
  f.pki.file('server-key.pem', next.key);
  const { status, body } = await json<{ changed: string[]; unchanged: string[]; errors: unknown[] }>(f.port, '/api/reload', { method: 'POST', body: '{}' });
  assert.equal(status, 200);
  assert.deepEqual(body, { changed: ['listeners.edge.tls'], unchanged: ['upstreams.backend.tls'], errors: [] });

  const s = tls.connect({ host: '127.0.0.1', port: f.proxy.port, servername: 'localhost', ca: f.pki.ca.cert, cert: f.pki.client.cert, key: f.pki.client.key });
  await once(s, 'secureConnect');
  assert.equal(s.getPeerX509Certificate()?.fingerprint256, new X509Certificate(next.cert).fingerprint256);
  s.destroy();
  const again = await json<{ changed: string[] }>(f.port, '/api/reload', { method: 'POST' });
  assert.deepEqual(again.body.changed, []);
});

test('POST /api/reload with a bad file: the error is reported, the old certificate stays', async (t) => {
  const f = await setup(t);
  f.pki.file('server.pem', 'not a certificate');
  const { status, body } = await json<{ changed: string[]; errors: Array<{ what: string; error: string }> }>(f.port, '/api/reload', { method: 'POST' });
  assert.equal(status, 200);
  assert.deepEqual(body.changed, []);
  assert.equal(body.errors[0]?.what, 'listeners.edge.tls');
  assert.ok((body.errors[0]?.error ?? '').length > 0);
});

test('cross-site POST /api/reload is refused: a browser would attach its Basic credentials', async (t) => {
  const f = await setup(t);
  const cross = await json(f.port, '/api/reload', { method: 'POST', headers: { origin: 'https://evil.example' } });
  assert.equal(cross.status, 403);
  assert.equal(cross.body.error, 'forbidden');
  assert.equal((await json(f.port, '/api/reload', { method: 'POST', headers: { 'sec-fetch-site': 'cross-site' } })).status, 403);
  assert.equal((await json(f.port, '/api/reload', { method: 'POST', headers: { origin: `http://127.0.0.1:${f.port}` } })).status, 200);
});

test('unknown routes: 404 JSON, with or without credentials', async (t) => {
  const f = await setup(t);
  for (const path of ['/api/nope', '/nope', '/api', '/api/status/x', '/index.html', '/assets/', '//api/status']) {
    for (const auth of [undefined, null]) {
      const { status, body } = await json(f.port, path, { auth });
      assert.equal(status, 404, path);
      assert.deepEqual(body, { error: 'not_found', message: 'no such endpoint' });
    }
  }
});

test('methods: HEAD goes with GET; others 405 with Allow', async (t) => {
  const f = await setup(t);
  const head = await call(f.port, '/api/status', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body, '');
  assert.ok(Number(head.headers['content-length']) > 0);
  const cases: Array<[string, string, string]> = [
    ['DELETE', '/api/status', 'GET, HEAD'], ['POST', '/healthz', 'GET, HEAD'], ['GET', '/api/reload', 'POST'],
    ['PUT', '/', 'GET, HEAD'], ['OPTIONS', '/api/config', 'GET, HEAD'], ['POST', '/assets/app.js', 'GET, HEAD'],
  ];
  for (const [method, path, allow] of cases) {
    const { status, body, reply } = await json(f.port, path, { method });
    assert.equal(status, 405, `${method} ${path}`);
    assert.equal(reply.headers.allow, allow);
    assert.equal(body.error, 'method_not_allowed');
  }
});

test('bodies over 1 KiB: 413 without reading them, declared or chunked, and the connection closed', async (t) => {
  const f = await setup(t);
  // Declared: answered before a byte of the body is sent.
  const declared = await raw(f.port, `POST /api/reload HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\nContent-Length: 1048576\r\n\r\n`);
  assert.match(declared, /^HTTP\/1\.1 413 /);
  assert.match(declared, /connection: close/i);
  assert.ok(declared.endsWith(JSON.stringify({ error: 'payload_too_large', message: 'request bodies are limited to 1024 bytes' })));
  // Chunked: counted as it comes; the rest is never read.
  const chunk = 'a'.repeat(1500);
  const chunked = await raw(f.port, `POST /api/reload HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk.length.toString(16)}\r\n${chunk}\r\n`);
  assert.match(chunked, /^HTTP\/1\.1 413 /);
  // Any route, even one that takes no body, and before credentials are looked at.
  assert.match(await raw(f.port, 'GET /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n'), /^HTTP\/1\.1 413 /);
  assert.match(await raw(f.port, 'GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n'), /^HTTP\/1\.1 413 /);
  // Up to 1 KiB is fine.
  assert.equal((await call(f.port, '/api/reload', { method: 'POST', body: 'x'.repeat(1024) })).status, 200);
});

test('dashboard: index and assets with their content types; no way out of the folder', async (t) => {
  const f = await setup(t);
  const index = await call(f.port, '/');
  assert.equal(index.status, 200);
  assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
  assert.match(index.body, /<title>mtls-proxy<\/title>/);
  const js = await call(f.port, '/assets/app.js?v=1');
  assert.equal(js.status, 200);
  assert.equal(js.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.equal((await call(f.port, '/assets/app.css')).headers['content-type'], 'text/css; charset=utf-8');
  const traversal = [
    '/assets/../secret.txt', '/assets/../../secret.txt', '/assets/..%2f..%2fsecret.txt', '/assets/%2e%2e/%2e%2e/secret.txt',
    '/assets/..%5c..%5csecret.txt', '/assets/..\\..\\secret.txt', '/assets/link.txt', '/assets/.env', '/assets/%2eenv',
    '/assets/app.js%00.png', '/assets/%ff', '/assets/assets', '/assets//app.js', '/assets/./app.js', '/assets/nope.js',
  ];
  for (const path of traversal) {
    const r = await call(f.port, path);
    assert.equal(r.status, 404, path);
    assert.ok(!r.body.includes('outside'), path);
  }
});

test('a thrown error: 500 {"error":"internal"} without a stack or message, and a log line', async (t) => {
  const lines = new PassThrough();
  let logged = '';
  lines.on('data', (d: Buffer) => { logged += d.toString(); });
  const f = await setup(t, {
    logger: pino({ level: 'error' }, lines),
    view: { certificates: () => { throw new Error('secret detail at /etc/key.pem'); } },
  });
  const { status, body, reply } = await json(f.port, '/api/certificates');
  assert.equal(status, 500);
  assert.deepEqual(body, { error: 'internal', message: 'internal error' });
  assert.ok(!reply.body.includes('secret') && !reply.body.includes('at '));
  assert.match(logged, /admin request failed/);
  assert.match(logged, /secret detail/);
  // The server goes on serving.
  assert.equal((await call(f.port, '/api/status')).status, 200);
});

test('listen on a taken address: an error naming admin.address; close() is idempotent', async (t) => {
  const f = await setup(t);
  const clash = new AdminServer({
    config: { address: { host: '127.0.0.1', port: f.port }, username: 'admin', passwordHash: HASH },
    view: f.proxy.server, metrics: null, requestLog: null, logger: silentLogger,
  });
  await assert.rejects(clash.listen(), (err: Error & { path?: string }) => err.path === 'admin.address' && /EADDRINUSE/.test(err.message));
  await clash.close();
  // A request in flight when close() is called still gets its answer.
  const pending = call(f.port, '/api/status', { auth: `Basic ${Buffer.from('admin:wrong').toString('base64')}` });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const closing = [f.admin.close(), f.admin.close()];
  assert.equal((await pending).status, 401);
  await Promise.all(closing);
  assert.throws(() => f.admin.address(), /not listening/);
});
