// docs/admin-api.yaml against the real server: every documented path, method and status is
// produced by a real request and the real body (and headers) validated against the documented
// schema; every route the server serves is documented. The validator below covers the subset
// of JSON Schema the document uses and refuses any keyword it does not know, so the document
// cannot say more than is checked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcrypt';
import { parse } from 'yaml';
import type { RequestLogLike, RequestLogRow } from '../src/admin/api.ts';
import { AdminServer, type MetricsLike } from '../src/admin/server.ts';
import type { ProxyView } from '../src/admin/types.ts';
import type { Config } from '../src/config/types.ts';
import { silentLogger } from '../src/log.ts';
import type { ProxyServer } from '../src/server.ts';
import { makeTestPki } from './support/pki.ts';
import { clientAgent, request, startProxy } from './support/proxy.ts';
import { startUpstream } from './support/upstream.ts';

const PASSWORD = 'openapi-test-password';
const HASH = await bcrypt.hash(PASSWORD, 4);
const AUTH = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`;
const WRONG = `Basic ${Buffer.from('admin:wrong').toString('base64')}`;
const SECURITY_HEADERS = ['Content-Security-Policy', 'X-Content-Type-Options', 'X-Frame-Options', 'Referrer-Policy', 'Cache-Control'];
const METHODS = ['get', 'post', 'put', 'delete', 'patch', 'head', 'options'];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = { [k: string]: Json };

const doc = parse(readFileSync(new URL('../docs/admin-api.yaml', import.meta.url), 'utf8')) as Schema;

const SOCKET_RESOURCES = new Set(['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap']);
const openSockets = (): number => process.getActiveResourcesInfo().filter((r) => SOCKET_RESOURCES.has(r)).length;
const baseline = openSockets();

// ---- a small JSON Schema validator for the keywords the document uses ---------------------

const KEYWORDS = new Set(['$ref', 'type', 'properties', 'required', 'additionalProperties', 'items', 'enum', 'pattern',
  'minimum', 'minLength', 'maxLength', 'format', 'description', 'default']);
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function isObject(v: unknown): v is { [k: string]: Json } {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function resolve(ref: string): Schema {
  assert.ok(ref.startsWith('#/'), `only local $refs: ${ref}`);
  let node: Json = doc;
  for (const part of ref.slice(2).split('/')) {
    assert.ok(isObject(node) && part in node, `$ref ${ref} does not resolve`);
    node = node[part]!;
  }
  assert.ok(isObject(node), `$ref ${ref} is not an object`);
  return node;
}

function deref(node: Json | undefined): Schema {
  assert.ok(isObject(node));
  return typeof node.$ref === 'string' ? deref(resolve(node.$ref)) : node;
}

function hasType(type: Json, v: unknown): boolean {
  switch (type) {
    case 'null': return v === null;
    case 'object': return isObject(v);
    case 'array': return Array.isArray(v);
    case 'string': return typeof v === 'string';
    case 'number': return typeof v === 'number' && Number.isFinite(v);
    case 'integer': return Number.isInteger(v);
    case 'boolean': return typeof v === 'boolean';
    default: throw new Error(`unknown type ${JSON.stringify(type)}`);
  }
}

function validate(schema: Schema, value: unknown, at = '$', errors: string[] = []): string[] {
  for (const k of Object.keys(schema)) if (!KEYWORDS.has(k)) throw new Error(`${at}: the test's validator does not support "${k}"`);
  if (typeof schema.$ref === 'string') return validate(resolve(schema.$ref), value, at, errors);
  const show = JSON.stringify(value)?.slice(0, 80);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => hasType(t, value))) {
      errors.push(`${at}: expected ${types.join(' or ')}, got ${show}`);
      return errors;
    }
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => e === value)) errors.push(`${at}: ${show} is not one of ${JSON.stringify(schema.enum)}`);
  if (typeof value === 'string') {
    if (typeof schema.pattern === 'string' && !new RegExp(schema.pattern, 'u').test(value)) errors.push(`${at}: ${show} does not match ${schema.pattern}`);
    if (schema.format === 'date-time' && (!ISO_DATE_TIME.test(value) || !Number.isFinite(Date.parse(value)))) errors.push(`${at}: ${show} is not a date-time`);
    if (typeof schema.minLength === 'number' && value.length < schema.minLength) errors.push(`${at}: shorter than ${schema.minLength}`);
    if (typeof schema.maxLength === 'number' && value.length > schema.maxLength) errors.push(`${at}: longer than ${schema.maxLength}`);
  }
  if (typeof value === 'number' && typeof schema.minimum === 'number' && value < schema.minimum) errors.push(`${at}: ${value} < ${schema.minimum}`);
  if (Array.isArray(value) && isObject(schema.items)) value.forEach((v, i) => validate(schema.items as Schema, v, `${at}[${i}]`, errors));
  if (isObject(value)) {
    const props = isObject(schema.properties) ? schema.properties : {};
    for (const name of Array.isArray(schema.required) ? schema.required : []) {
      if (!(String(name) in value)) errors.push(`${at}: missing required "${String(name)}"`);
    }
    for (const [name, v] of Object.entries(value)) {
      const p = props[name];
      if (isObject(p)) validate(p, v, `${at}.${name}`, errors);
      else if (schema.additionalProperties === false) errors.push(`${at}: unexpected property "${name}"`);
      else if (isObject(schema.additionalProperties)) validate(schema.additionalProperties, v, `${at}.${name}`, errors);
    }
  }
  return errors;
}

// ---- the servers and the requests ---------------------------------------------------------

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function call(port: number, path: string, opts: { method?: string; auth?: string | null; headers?: Record<string, string> } = {}): Promise<Reply> {
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
    req.end();
  });
}

/** A request whose declared body is too long: answered before the body is sent. */
async function oversize(port: number, path: string): Promise<Reply> {
  const s = net.connect({ host: '127.0.0.1', port });
  await once(s, 'connect');
  s.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH}\r\nContent-Length: 2048\r\n\r\n`);
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  await new Promise((resolve) => { s.on('close', resolve); s.on('error', resolve); });
  const [head = '', body = ''] = Buffer.concat(parts).toString('utf8').split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: http.IncomingHttpHeaders = {};
  for (const line of lines) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
  return { status: Number(statusLine.split(' ')[1]), headers, body };
}

const metrics: MetricsLike = {
  contentType: 'text/plain; version=0.0.4; charset=utf-8',
  render: () => Promise.resolve('# TYPE mtls_proxy_up gauge\nmtls_proxy_up 1\n'),
  authFailure: () => {},
};

function viewOf(server: ProxyServer, config: Config): ProxyView {
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
  };
}

const boom = (): never => { throw new Error('boom'); };
const brokenView: ProxyView = {
  version: '0.0.0', startedAt: 0, phase: 'running',
  get config(): Config { return boom(); },
  listeners: boom, upstreams: boom, certificates: boom, readiness: boom, reload: () => Promise.reject(new Error('boom')),
};

/** Every documented path, method and status code, as "get /api/status 200". */
function documented(): Set<string> {
  const out = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths as Schema)) {
    for (const [method, op] of Object.entries(deref(item))) {
      if (!METHODS.includes(method)) continue;
      for (const status of Object.keys(deref(deref(op).responses))) out.add(`${method} ${path} ${status}`);
    }
  }
  return out;
}

function responseOf(method: string, path: string, status: string): Schema {
  const operation = deref(deref(deref(doc.paths)[path])[method]);
  return deref(deref(operation.responses)[status]);
}

function check(key: string, reply: Reply): void {
  const [method = '', path = '', status = ''] = key.split(' ');
  assert.equal(String(reply.status), status, `${key}: got ${reply.status} ${reply.body.slice(0, 200)}`);
  const response = responseOf(method, path, status);
  // Headers: every documented one present with a valid value.
  const headers = deref(response.headers ?? {});
  for (const name of SECURITY_HEADERS) assert.ok(name in headers, `${key}: ${name} is not documented`);
  for (const [name, spec] of Object.entries(headers)) {
    const h = deref(spec);
    const actual = reply.headers[name.toLowerCase()];
    if (h.required === true) assert.ok(actual !== undefined, `${key}: header ${name} missing`);
    if (actual === undefined) continue;
    const schema = deref(h.schema);
    const value = schema.type === 'integer' ? Number(actual) : actual;
    assert.deepEqual(validate(schema, value, `${key} ${name}`), []);
  }
  // Body: the media type that matches, and its schema.
  const content = deref(response.content);
  const mediaType = (reply.headers['content-type'] ?? '').split(';')[0]!.trim();
  const spec = content[mediaType] ?? content['*/*'];
  assert.ok(spec !== undefined, `${key}: content type ${mediaType} is not documented (${Object.keys(content).join(', ')})`);
  const schema = deref(deref(spec).schema);
  const body: unknown = mediaType === 'application/json' ? JSON.parse(reply.body) : reply.body;
  assert.deepEqual(validate(schema, body, key), [], `${key}: ${reply.body.slice(0, 300)}`);
}

test.after(async () => {
  await new Promise((resolve) => setTimeout(resolve, 20)); // libuv closes handles a loop turn after 'close'
  assert.equal(openSockets(), baseline, 'no socket left open');
});

test('the document: OpenAPI 3.1, Basic security, every response documents the security headers', () => {
  assert.equal(doc.openapi, '3.1.0');
  const basic = deref(deref(deref(doc.components).securitySchemes).basic);
  assert.equal(basic.type, 'http');
  assert.equal(basic.scheme, 'basic');
  assert.deepEqual(doc.security, [{ basic: [] }]);
  for (const key of documented()) {
    const [method = '', path = '', status = ''] = key.split(' ');
    const response = responseOf(method, path, status);
    for (const name of SECURITY_HEADERS) assert.ok(name in deref(response.headers ?? {}), `${key}: ${name}`);
  }
});

test('the validator is not vacuous', () => {
  const error = deref(resolve('#/components/schemas/Error'));
  assert.deepEqual(validate(error, { error: 'not_found', message: 'x' }), []);
  assert.equal(validate(error, { error: 'not_found', message: 'x', stack: 'at …' }).length, 1);
  assert.equal(validate(error, { error: 'nope', message: 'x' }).length, 1);
  assert.equal(validate(error, { error: 'not_found' }).length, 1);
  const row = deref(resolve('#/components/schemas/Certificate'));
  assert.ok(validate(row, { role: 'listener', owner: 'e', subject: 's', sans: [], issuer: 'i', not_after: 'soon', days_left: 1.5, sha256: 'AB' }).length >= 3);
  assert.throws(() => validate({ oneOf: [] }, 1), /does not support "oneOf"/);
});

test('every documented path, method and status answers as documented; every served route is documented', async (t) => {
  const pki = await makeTestPki();
  const upstream = await startUpstream(pki);
  const proxy = await startProxy(pki, upstream.port);
  const dir = mkdtempSync(join(tmpdir(), 'admin-openapi-'));
  mkdirSync(join(dir, 'dashboard', 'assets'), { recursive: true });
  mkdirSync(join(dir, 'empty'));
  writeFileSync(join(dir, 'dashboard', 'index.html'), '<!doctype html><title>mtls-proxy</title>');
  writeFileSync(join(dir, 'dashboard', 'assets', 'app.js'), '// dashboard\n');
  t.after(async () => {
    await proxy.stop();
    await upstream.close();
    pki.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const agent = clientAgent(pki);
  for (let i = 0; i < 3; i++) await request(proxy.port, agent, 'GET', `/r/${i}`);
  await request(proxy.port, agent, 'POST', '/upload', 'x'.repeat(100));
  agent.destroy();

  const adminConfig = { address: { host: '127.0.0.1', port: 0 }, username: 'admin', passwordHash: HASH };
  const config: Config = { ...proxy.server.config, admin: adminConfig, requestLog: { path: join(dir, 'requests.db'), retentionMs: 86_400_000, maxRows: 10 } };
  const requestLog: RequestLogLike = {
    query: async (f) => proxy.records.slice(-f.limit).reverse().map((r): RequestLogRow => ({
      id: r.id, ts: r.ts, listener: r.listener, client_addr: r.clientAddr, client_subject: r.clientSubject, client_sha256: r.clientSha256,
      method: r.method, host: r.host, path: r.path, status: r.status, upstream: r.upstream, endpoint: r.endpoint,
      bytes_in: r.bytesIn, bytes_out: r.bytesOut, duration_ms: r.durationMs, error: r.error,
    })),
  };
  const start = async (view: ProxyView, opts: { metrics?: MetricsLike | null; requestLog?: RequestLogLike | null; dashboard?: string } = {}): Promise<{ port: number; admin: AdminServer }> => {
    const admin = new AdminServer({
      config: adminConfig, view, metrics: opts.metrics === undefined ? metrics : opts.metrics,
      requestLog: opts.requestLog === undefined ? requestLog : opts.requestLog, logger: silentLogger, dashboardDir: opts.dashboard ?? join(dir, 'dashboard'),
    });
    const { port } = await admin.listen();
    t.after(() => admin.close());
    return { port, admin };
  };
  const main = await start(viewOf(proxy.server, config));
  const bare = await start(viewOf(proxy.server, config), { metrics: null, requestLog: null, dashboard: join(dir, 'empty') });
  const broken = await start(brokenView, {
    metrics: { ...metrics, render: () => Promise.reject(new Error('boom')) },
    requestLog: { query: boom },
  });
  const locked = await start(viewOf(proxy.server, config));
  await Promise.all(Array.from({ length: 5 }, () => call(locked.port, '/api/status', { auth: WRONG })));

  const apiGets = ['/api/status', '/api/upstreams', '/api/requests', '/api/certificates', '/api/config'];
  const produce = new Map<string, () => Promise<Reply>>([
    ['get /healthz 200', () => call(main.port, '/healthz', { auth: null })],
    ['get /readyz 200', () => call(main.port, '/readyz', { auth: null })],
    ['get /readyz 500', () => call(broken.port, '/readyz', { auth: null })],
    ['get /metrics 200', () => call(main.port, '/metrics', { auth: null })],
    ['get /metrics 404', () => call(bare.port, '/metrics', { auth: null })],
    ['get /metrics 500', () => call(broken.port, '/metrics', { auth: null })],
    ['get / 200', () => call(main.port, '/')],
    ['get / 401', () => call(main.port, '/', { auth: null })],
    ['get / 404', () => call(bare.port, '/')],
    ['get / 429', () => call(locked.port, '/')],
    ['get /assets/{path} 200', () => call(main.port, '/assets/app.js')],
    ['get /assets/{path} 401', () => call(main.port, '/assets/app.js', { auth: WRONG })],
    ['get /assets/{path} 404', () => call(main.port, '/assets/..%2findex.html')],
    ['get /assets/{path} 429', () => call(locked.port, '/assets/app.js')],
    ...apiGets.flatMap((p): Array<[string, () => Promise<Reply>]> => [
      [`get ${p} 200`, () => call(main.port, p)],
      [`get ${p} 401`, () => call(main.port, p, { auth: null })],
      [`get ${p} 429`, () => call(locked.port, p)],
      [`get ${p} 500`, () => call(broken.port, p)],
    ]),
    ['get /api/requests 400', () => call(main.port, '/api/requests?status=9xx')],
    ['post /api/reload 200', () => call(main.port, '/api/reload', { method: 'POST' })],
    ['post /api/reload 401', () => call(main.port, '/api/reload', { method: 'POST', auth: null })],
    ['post /api/reload 403', () => call(main.port, '/api/reload', { method: 'POST', headers: { origin: 'http://evil.example' } })],
    ['post /api/reload 413', () => oversize(main.port, '/api/reload')],
    ['post /api/reload 429', () => call(locked.port, '/api/reload', { method: 'POST' })],
    ['post /api/reload 500', () => call(broken.port, '/api/reload', { method: 'POST' })],
    // Last: the proxy drains, and the admin listener, still up, says so.
    ['get /readyz 503', async () => {
      const draining = proxy.server.shutdown();
      const reply = await call(main.port, '/readyz', { auth: null });
      await draining;
      return reply;
    }],
  ]);

  // Both ways: nothing documented is left unexercised, nothing exercised is undocumented.
  assert.deepEqual([...produce.keys()].sort(), [...documented()].sort());
  // Every served route is documented, with the same methods (HEAD goes with GET).
  const served = main.admin.routes().flatMap((r) => r.methods.map((m) => `${m.toLowerCase()} ${r.path}`)).sort();
  const paths = deref(doc.paths);
  const inDoc = Object.keys(paths).flatMap((p) => Object.keys(deref(paths[p])).filter((m) => METHODS.includes(m)).map((m) => `${m} ${p}`)).sort();
  assert.deepEqual(served, inDoc);

  // Answers no operation documents on its own (described in info.description) still use the Error schema.
  const error = resolve('#/components/schemas/Error');
  for (const reply of [await call(main.port, '/nope'), await call(main.port, '/api/status', { method: 'DELETE' }), await oversize(main.port, '/api/status')]) {
    assert.deepEqual(validate(error, JSON.parse(reply.body)), [], reply.body);
  }

  for (const [key, make] of produce) check(key, await make());
  // The no-log variant of /api/requests is the same documented 200.
  check('get /api/requests 200', await call(bare.port, '/api/requests'));

});
