// Every admin response carries the security headers (issue 3): CSP without inline script,
// nosniff, frame denial, no referrer, and no caching. Checked on every kind of answer the
// server gives, including refusals and the ones written for Node's own parse errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcrypt';
import { AdminServer, type MetricsLike } from '../src/admin/server.ts';
import type { ProxyView } from '../src/admin/types.ts';
import { silentLogger } from '../src/log.ts';
import type { ProxyServer } from '../src/server.ts';
import { makeTestPki } from './support/pki.ts';
import { startProxy } from './support/proxy.ts';
import { startUpstream } from './support/upstream.ts';

const PASSWORD = 'headers-test-password';
const HASH = await bcrypt.hash(PASSWORD, 4);
const AUTH = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`;
const WRONG = `Basic ${Buffer.from('admin:wrong').toString('base64')}`;

const EXPECTED: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

const SOCKET_RESOURCES = new Set(['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap']);
const openSockets = (): number => process.getActiveResourcesInfo().filter((r) => SOCKET_RESOURCES.has(r)).length;
const baseline = openSockets();

const metrics: MetricsLike = {
  contentType: 'text/plain; version=0.0.4; charset=utf-8',
  render: () => Promise.resolve('mtls_proxy_up 1\n'),
  authFailure: () => {},
};

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
}

function call(port: number, path: string, opts: { method?: string; auth?: string | null; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    const auth = opts.auth === undefined ? AUTH : opts.auth;
    if (auth !== null) headers.authorization = auth;
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Raw bytes in, the response head's status and headers out (lower-cased names). */
async function raw(port: number, bytes: string): Promise<Reply> {
  const s = net.connect({ host: '127.0.0.1', port });
  await once(s, 'connect');
  s.write(bytes);
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  await new Promise((resolve) => { s.on('close', resolve); s.on('error', resolve); });
  const [head = ''] = Buffer.concat(parts).toString('latin1').split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: http.IncomingHttpHeaders = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers };
}

function assertHeaders(what: string, reply: Reply, status: number): void {
  assert.equal(reply.status, status, what);
  for (const [name, value] of Object.entries(EXPECTED)) assert.equal(reply.headers[name], value, `${what}: ${name}`);
}

async function startAdmin(t: test.TestContext, server: ProxyServer, dashboard: string, view: ProxyView = server): Promise<number> {
  const admin = new AdminServer({
    config: { address: { host: '127.0.0.1', port: 0 }, username: 'admin', passwordHash: HASH },
    view, metrics, requestLog: null, logger: silentLogger, dashboardDir: dashboard,
  });
  const { port } = await admin.listen();
  t.after(() => admin.close());
  return port;
}

test.after(async () => {
  await new Promise((resolve) => setTimeout(resolve, 20)); // libuv closes handles a loop turn after 'close'
  assert.equal(openSockets(), baseline, 'no socket left open');
});

test('every admin response carries the security headers', async (t) => {
  const pki = await makeTestPki();
  const upstream = await startUpstream(pki);
  const proxy = await startProxy(pki, upstream.port);
  const dashboard = mkdtempSync(join(tmpdir(), 'admin-headers-'));
  mkdirSync(join(dashboard, 'assets'));
  writeFileSync(join(dashboard, 'index.html'), '<!doctype html><title>mtls-proxy</title>');
  writeFileSync(join(dashboard, 'assets', 'app.js'), '// dashboard\n');
  t.after(async () => {
    await proxy.stop();
    await upstream.close();
    pki.cleanup();
    rmSync(dashboard, { recursive: true, force: true });
  });
  const port = await startAdmin(t, proxy.server, dashboard);
  const failing: ProxyView = {
    version: proxy.server.version, startedAt: proxy.server.startedAt, phase: 'running', config: proxy.server.config,
    listeners: () => { throw new Error('boom'); }, upstreams: () => [], certificates: () => [],
    readiness: () => ({ ready: true, reasons: [] }), reload: () => Promise.reject(new Error('boom')),
  };
  const failingPort = await startAdmin(t, proxy.server, dashboard, failing);

  const cases: Array<[string, () => Promise<Reply>, number]> = [
    ['200 /api/status', () => call(port, '/api/status'), 200],
    ['200 HEAD /api/status', () => call(port, '/api/status', { method: 'HEAD' }), 200],
    ['200 /api/config', () => call(port, '/api/config'), 200],
    ['200 /api/upstreams', () => call(port, '/api/upstreams'), 200],
    ['200 /api/requests', () => call(port, '/api/requests'), 200],
    ['200 POST /api/reload', () => call(port, '/api/reload', { method: 'POST' }), 200],
    ['200 dashboard HTML', () => call(port, '/'), 200],
    ['200 dashboard asset', () => call(port, '/assets/app.js'), 200],
    ['200 /healthz', () => call(port, '/healthz', { auth: null }), 200],
    ['200 /readyz', () => call(port, '/readyz', { auth: null }), 200],
    ['200 /metrics', () => call(port, '/metrics', { auth: null }), 200],
    ['400 bad query', () => call(port, '/api/requests?limit=x'), 400],
    ['400 unparsable request', () => raw(port, 'GET /api/status HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n'), 400],
    ['401 no credentials', () => call(port, '/api/status', { auth: null }), 401],
    ['401 dashboard without credentials', () => call(port, '/', { auth: null }), 401],
    ['403 cross-site', () => call(port, '/api/reload', { method: 'POST', headers: { origin: 'https://evil.example' } }), 403],
    ['404 unknown route', () => call(port, '/nope', { auth: null }), 404],
    ['404 missing asset', () => call(port, '/assets/nope.js'), 404],
    ['405', () => call(port, '/api/status', { method: 'DELETE' }), 405],
    ['413', () => raw(port, 'POST /api/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n'), 413],
    ['431 headers too large', () => raw(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`), 431],
    ['500', () => call(failingPort, '/api/status'), 500],
  ];
  for (const [what, make, status] of cases) assertHeaders(what, await make(), status);

  // 429: lock this address out (five wrong guesses in flight, the sixth refused).
  const guesses = await Promise.all(Array.from({ length: 6 }, () => call(port, '/api/status', { auth: WRONG })));
  const limited = guesses.find((r) => r.status === 429)!;
  assertHeaders('429', limited, 429);
  assert.ok(Number(limited.headers['retry-after']) >= 1);
  assertHeaders('429 dashboard', await call(port, '/'), 429);
  for (const r of guesses.filter((g) => g.status === 401)) assertHeaders('401 wrong password', r, 401);

  // 503: readiness while draining.
  const draining = proxy.server.shutdown();
  assertHeaders('503 /readyz', await call(port, '/readyz', { auth: null }), 503);
  await draining;
});
