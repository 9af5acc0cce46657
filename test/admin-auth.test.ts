// Admin sign-in: HTTP Basic against a bcrypt hash, failures slowed and then refused per client
// address (token bucket: 5 failures, one back every 10 s), probes open to all. A real admin
// server on port 0 over a real running proxy; the hash is made here at cost 4 to stay fast.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcrypt';
import { FailureLimiter, parseBasicAuth, WWW_AUTHENTICATE } from '../src/admin/auth.ts';
import { AdminServer, type MetricsLike } from '../src/admin/server.ts';
import { silentLogger } from '../src/log.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { startProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type TestUpstream } from './support/upstream.ts';

// A colon inside: Basic splits user from password at the first one only (RFC 7617 section 2).
const PASSWORD = 'correct:horse battery staple';
const HASH = await bcrypt.hash(PASSWORD, 4);
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const GOOD = basic('admin', PASSWORD);

const SOCKET_RESOURCES = new Set(['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap']);
const openSockets = (): number => process.getActiveResourcesInfo().filter((r) => SOCKET_RESOURCES.has(r)).length;
const baseline = openSockets();

class FakeMetrics implements MetricsLike {
  readonly contentType = 'text/plain; version=0.0.4; charset=utf-8';
  readonly failures: string[] = [];
  render(): Promise<string> {
    return Promise.resolve('# TYPE mtls_proxy_up gauge\nmtls_proxy_up 1\n');
  }
  authFailure(reason: string): void {
    this.failures.push(reason);
  }
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  ms: number;
}

function call(port: number, path: string, auth?: string, localAddress = '127.0.0.1'): Promise<Reply> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = auth === undefined ? {} : { authorization: auth };
    const req = http.request({ host: '127.0.0.1', port, path, headers, agent: false, localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, ms: performance.now() - started }));
    });
    req.on('error', reject);
    req.end();
  });
}

let shared: { pki: TestPki; upstream: TestUpstream; proxy: TestProxy; dashboard: string } | null = null;

test.before(async () => {
  const pki = await makeTestPki();
  const upstream = await startUpstream(pki);
  const proxy = await startProxy(pki, upstream.port);
  const dashboard = mkdtempSync(join(tmpdir(), 'admin-dashboard-'));
  writeFileSync(join(dashboard, 'index.html'), '<!doctype html><title>mtls-proxy</title>');
  shared = { pki, upstream, proxy, dashboard };
});

test.after(async () => {
  if (shared !== null) {
    await shared.proxy.stop();
    await shared.upstream.close();
    shared.pki.cleanup();
    rmSync(shared.dashboard, { recursive: true, force: true });
  }
  await new Promise((resolve) => setTimeout(resolve, 20)); // libuv closes handles a loop turn after 'close'
  assert.equal(openSockets(), baseline, 'no socket left open');
});

/** A fresh admin server (and so a fresh failure table) over the shared proxy. */
async function admin(t: test.TestContext, passwordHash: string | null = HASH): Promise<{ port: number; metrics: FakeMetrics }> {
  const s = shared!;
  const metrics = new FakeMetrics();
  const server = new AdminServer({
    config: { address: { host: '127.0.0.1', port: 0 }, username: 'admin', passwordHash },
    view: s.proxy.server, metrics, requestLog: null, logger: silentLogger, dashboardDir: s.dashboard,
  });
  const { port } = await server.listen();
  t.after(() => server.close());
  return { port, metrics };
}

test('parseBasicAuth: strict Basic, scheme in any case, split at the first colon', () => {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  assert.equal(parseBasicAuth(undefined), 'missing');
  assert.equal(parseBasicAuth(''), 'missing');
  assert.deepEqual(parseBasicAuth(`Basic ${b64('admin:pa:ss')}`), { username: 'admin', password: 'pa:ss' });
  assert.deepEqual(parseBasicAuth(`bAsIc ${b64('admin:')}`), { username: 'admin', password: '' });
  assert.deepEqual(parseBasicAuth(`Basic ${b64('ädmin:pässwörd')}`), { username: 'ädmin', password: 'pässwörd' });
  for (const bad of [
    'Basic', 'Basic ', 'Bearer abc', `Basic ${b64('no colon')}`, 'Basic YWRtaW46eA', // unpadded
    'Basic YWRt!W46eA==', `Basic ${b64('admin:x')} extra`, 'Basic\tYWRtaW46eA==', `Basic ${b64('ad\u0001min:x')}`,
    `Basic ${Buffer.from([0x61, 0x3a, 0xff, 0xfe]).toString('base64')}`, // not UTF-8
  ]) {
    assert.equal(parseBasicAuth(bad), 'malformed', bad);
  }
});

test('FailureLimiter: 5 failures of burst, one back per 10 s, bounded table', () => {
  let now = 0;
  const limiter = new FailureLimiter({ now: () => now });
  for (let i = 0; i < 5; i++) assert.equal(limiter.take('a'), true);
  assert.equal(limiter.take('a'), false);
  assert.equal(limiter.waitMs('a'), 10_000);
  assert.equal(limiter.take('b'), true, 'another address has its own bucket');
  now += 9_999;
  assert.equal(limiter.take('a'), false);
  now += 1;
  assert.equal(limiter.take('a'), true, 'a token is back after 10 s');
  assert.equal(limiter.take('a'), false);
  limiter.refund('a');
  assert.equal(limiter.take('a'), true, 'a right password gives its token back');

  const small = new FailureLimiter({ now: () => now, maxEntries: 3 });
  for (const a of ['x', 'y', 'z', 'w']) for (let i = 0; i < 5; i++) small.take(a);
  assert.equal(small.size, 3);
  assert.equal(small.tokens('x'), 5, 'the least recently failed address was evicted');
  assert.equal(small.take('w'), false);
});

test('no password_hash: /api and the dashboard answer 401 to everybody', async (t) => {
  const { port, metrics } = await admin(t, null);
  for (const path of ['/api/status', '/', '/api/config']) {
    for (const auth of [undefined, GOOD]) {
      const r = await call(port, path, auth);
      assert.equal(r.status, 401, `${path} ${auth ?? 'without credentials'}`);
      assert.equal(r.headers['www-authenticate'], WWW_AUTHENTICATE);
      assert.equal((JSON.parse(r.body) as { error: string }).error, 'unauthorized');
    }
  }
  assert.deepEqual(new Set(metrics.failures), new Set(['no_password_configured']));
  // Nothing to guess, so nothing to lock out either.
  assert.equal((await call(port, '/api/status', GOOD)).status, 401);
});

test('right credentials: 200, also with the scheme in lower case', async (t) => {
  const { port, metrics } = await admin(t);
  assert.equal((await call(port, '/api/status', GOOD)).status, 200);
  assert.equal((await call(port, '/', GOOD)).status, 200);
  assert.equal((await call(port, '/api/status', GOOD.replace('Basic', 'basic'))).status, 200);
  assert.deepEqual(metrics.failures, []);
});

test('wrong password, wrong user, missing and malformed credentials: 401 with WWW-Authenticate, counted by reason', async (t) => {
  const { port, metrics } = await admin(t);
  const cases: Array<[string | undefined, string]> = [
    [undefined, 'missing'],
    [basic('admin', 'wrong'), 'bad_credentials'],
    [basic('root', PASSWORD), 'bad_credentials'],
    [basic('admin', 'correct'), 'bad_credentials'], // the part before the password's colon
    ['Basic not-base64', 'malformed'],
  ];
  for (const [auth, reason] of cases) {
    const r = await call(port, '/api/status', auth);
    assert.equal(r.status, 401, reason);
    assert.equal(r.headers['www-authenticate'], WWW_AUTHENTICATE);
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
    const body = JSON.parse(r.body) as { error: string; message: string };
    assert.equal(body.error, 'unauthorized');
    assert.ok(body.message.length > 0);
  }
  assert.deepEqual(metrics.failures, cases.map(([, reason]) => reason));
});

test('a password over 72 bytes is refused even when bcrypt would match its first 72', async (t) => {
  const long = 'x'.repeat(72);
  const { port } = await admin(t, await bcrypt.hash(long, 4));
  assert.equal((await call(port, '/api/status', basic('admin', long))).status, 200);
  assert.equal((await call(port, '/api/status', basic('admin', `${long}tail`))).status, 401);
});

test('repeated failures from one address are slowed, then refused with 429 and Retry-After; the right password too', async (t) => {
  const { port, metrics } = await admin(t);
  const wrong = basic('admin', 'guess');
  const delays: number[] = [];
  for (let i = 1; i <= 5; i++) {
    const r = await call(port, '/api/status', wrong);
    assert.equal(r.status, 401, `failure ${i}`);
    delays.push(r.ms);
    assert.ok(r.ms >= 250 * i - 20, `failure ${i} answered after ${r.ms.toFixed(0)} ms, expected at least ${250 * i}`);
  }
  const locked = await call(port, '/api/status', wrong);
  assert.equal(locked.status, 429);
  assert.ok(locked.ms < 200, `a refusal is immediate (no bcrypt, no delay): ${locked.ms.toFixed(0)} ms`);
  const retryAfter = Number(locked.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 10, `Retry-After ${locked.headers['retry-after']}`);
  assert.deepEqual(JSON.parse(locked.body), { error: 'too_many_attempts', message: `too many failed sign-in attempts from this address; retry in ${retryAfter} s` });
  assert.equal(locked.headers['www-authenticate'], undefined);

  // During the lockout the password is not checked at all, so the right one is refused too.
  assert.equal((await call(port, '/api/status', GOOD)).status, 429);
  assert.equal((await call(port, '/', GOOD)).status, 429);
  assert.deepEqual(metrics.failures, ['bad_credentials', 'bad_credentials', 'bad_credentials', 'bad_credentials', 'bad_credentials', 'rate_limited', 'rate_limited', 'rate_limited']);

  // Another address is not affected, and its success does not unlock the first.
  assert.equal((await call(port, '/api/status', GOOD, '127.0.0.2')).status, 200);
  assert.equal((await call(port, '/api/status', GOOD)).status, 429);
  // Probes stay open to the locked-out address.
  assert.equal((await call(port, '/healthz')).status, 200);
});

test('parallel guesses: at most 5 in flight per address, the rest refused without running bcrypt', async (t) => {
  const { port, metrics } = await admin(t);
  const replies = await Promise.all(Array.from({ length: 12 }, () => call(port, '/api/status', basic('admin', 'guess'))));
  const statuses = replies.map((r) => r.status).sort();
  assert.deepEqual(statuses, [...Array(5).fill(401), ...Array(7).fill(429)]);
  assert.equal(metrics.failures.filter((f) => f === 'bad_credentials').length, 5);
});

test('requests without credentials take no token: a browser\'s first request is not a guess', async (t) => {
  const { port } = await admin(t);
  for (let i = 0; i < 8; i++) {
    const r = await call(port, '/api/status');
    assert.equal(r.status, 401);
    assert.ok(r.ms < 200, 'not slowed');
  }
  assert.equal((await call(port, '/api/status', GOOD)).status, 200);
});

test('a right password between wrong ones does not refill the bucket', async (t) => {
  const { port } = await admin(t);
  const wrong = basic('admin', 'guess');
  await Promise.all(Array.from({ length: 4 }, () => call(port, '/api/status', wrong)));
  assert.equal((await call(port, '/api/status', GOOD)).status, 200);
  assert.equal((await call(port, '/api/status', wrong)).status, 401);
  assert.equal((await call(port, '/api/status', wrong)).status, 429);
});

test('/healthz, /readyz and /metrics need no credentials', async (t) => {
  const { port } = await admin(t);
  const health = await call(port, '/healthz');
  assert.equal(health.status, 200);
  assert.equal(health.body, 'ok');
  const ready = await call(port, '/readyz');
  assert.equal(ready.status, 200);
  assert.deepEqual(JSON.parse(ready.body), { ready: true, reasons: [] });
  const metrics = await call(port, '/metrics');
  assert.equal(metrics.status, 200);
  assert.equal(metrics.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  assert.match(metrics.body, /^mtls_proxy_up 1$/m);
  // Credentials, even wrong ones, change nothing there.
  assert.equal((await call(port, '/healthz', basic('admin', 'wrong'))).status, 200);
});
