import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigErrors, configFromObject, parseConfigText } from '../src/config/load.ts';
import { ConfigError } from '../src/errors.ts';

const HASH = '$2b$12$' + 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0'; // bcrypt shape: 22 salt + 31 hash chars

/** The errors a config produces, as "path@line: message" strings. */
function errorsOf(fn: () => unknown): ConfigError[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigErrors, `expected ConfigErrors, got ${String(err)}`);
    assert.ok(err instanceof ConfigError, 'ConfigErrors is catchable as a ConfigError');
    assert.equal(err.code, 'MTLS_ERR_CONFIG');
    return [...err.errors];
  }
  assert.fail('expected the config to be rejected');
}

function paths(errors: ConfigError[]): string[] {
  return errors.map((e) => e.path);
}

function minimal(overrides: { listener?: Record<string, unknown>; tls?: Record<string, unknown>; upstream?: Record<string, unknown>; root?: Record<string, unknown> } = {}): Record<string, unknown> {
  return {
    listeners: { edge: { address: '0.0.0.0:8443', upstream: 'backend', tls: { cert: 'server.pem', key: 'server-key.pem', ...overrides.tls }, ...overrides.listener } },
    upstreams: { backend: { endpoints: ['10.0.0.5:443'], ...overrides.upstream } },
    ...overrides.root,
  };
}

const fromObject = (raw: unknown) => configFromObject(raw, { baseDir: '/etc/mtls', env: {} });

test('a minimal config gets every documented default', () => {
  const config = fromObject(minimal());
  assert.equal(config.source, null);
  assert.deepEqual(config.server, { drainTimeoutMs: 30_000, workers: 1 });
  assert.equal(config.admin, null);
  assert.deepEqual(config.log, { level: 'info', format: 'json' });
  assert.equal(config.requestLog, null);
  assert.equal(config.listeners.length, 1);
  assert.deepEqual(config.listeners[0], {
    name: 'edge',
    address: { host: '0.0.0.0', port: 8443 },
    mode: 'http',
    upstream: 'backend',
    websocket: true,
    tls: {
      cert: '/etc/mtls/server.pem', key: '/etc/mtls/server-key.pem', clientCa: null, clientAuth: 'none', allow: [],
      minVersion: 'TLSv1.2', crl: null, handshakeTimeoutMs: 10_000,
    },
    limits: { maxHeaderSize: 65_536, maxHeaders: 100, maxUriLength: 8_192, headerTimeoutMs: 10_000, idleTimeoutMs: 60_000 },
    routes: [],
  });
  assert.deepEqual(config.upstreams.get('backend'), {
    name: 'backend',
    endpoints: [{ host: '10.0.0.5', port: 443 }],
    tls: { cert: null, key: null, ca: null, serverName: null, minVersion: 'TLSv1.2' },
    pool: { maxConnections: 128, maxPending: 1024, idleTimeoutMs: 30_000 },
    healthCheck: null,
    timeouts: { connectMs: 2_000, responseHeaderMs: 30_000, idleMs: 60_000 },
    failureBackoffMs: 5_000,
  });
});

test('the full example from PRODUCT.md parses to the normalised values', () => {
  const text = `
[server]
drain_timeout = "30s"
workers = "auto"

[admin]
address = "127.0.0.1:9901"
username = "admin"
password_hash = "${HASH}"

[log]
level = "debug"
format = "pretty"

[request_log]
path = "data/requests.sqlite"
retention = "7d"
max_rows = 1000000

[listeners.edge]
address = "0.0.0.0:8443"
mode = "http"
upstream = "backend"
  [listeners.edge.tls]
  cert = "certs/server.pem"
  key = "certs/server-key.pem"
  client_ca = "certs/ca.pem"
  client_auth = "require"
  allow = ["CN=orders", "DNS=*.internal", "URI=spiffe://prod/*"]
  min_version = "TLSv1.3"
  crl = "certs/crl.pem"
  [listeners.edge.limits]
  max_header_size = "32KiB"
  max_headers = 50
  header_timeout = "5s"
  idle_timeout = "2m"
  [[listeners.edge.routes]]
  host = "api.example.com"
  path_prefix = "/v1/"
  upstream = "api"
  strip_prefix = true
  [[listeners.edge.routes]]
  host = "*.example.com"
  upstream = "backend"

[upstreams.backend]
endpoints = ["10.0.0.5:443", "10.0.0.6:443"]
  [upstreams.backend.tls]
  cert = "certs/client.pem"
  key = "certs/client-key.pem"
  ca = "certs/upstream-ca.pem"
  server_name = "backend.internal"
  [upstreams.backend.pool]
  max_connections = 16
  max_pending = 0
  idle_timeout = "45s"
  [upstreams.backend.health_check]
  path = "/healthz"
  interval = "5s"
  timeout = "1s"
  unhealthy_threshold = 3
  healthy_threshold = 2
  [upstreams.backend.timeouts]
  connect = "250ms"
  response_header = "30s"
  idle = "60s"

[upstreams.api]
endpoints = ["[fd00::1]:8443", "api.internal:443"]
failure_backoff = "0s"
`;
  const config = parseConfigText(text, '/srv/proxy/mtls-proxy.toml', {});
  assert.equal(config.source, '/srv/proxy/mtls-proxy.toml');
  assert.deepEqual(config.server, { drainTimeoutMs: 30_000, workers: 'auto' });
  assert.deepEqual(config.admin, { address: { host: '127.0.0.1', port: 9901 }, username: 'admin', passwordHash: HASH });
  assert.deepEqual(config.log, { level: 'debug', format: 'pretty' });
  assert.deepEqual(config.requestLog, { path: '/srv/proxy/data/requests.sqlite', retentionMs: 7 * 86_400_000, maxRows: 1_000_000 });
  const edge = config.listeners[0];
  assert.ok(edge);
  assert.equal(edge.tls.clientCa, '/srv/proxy/certs/ca.pem');
  assert.equal(edge.tls.crl, '/srv/proxy/certs/crl.pem');
  assert.equal(edge.tls.minVersion, 'TLSv1.3');
  assert.deepEqual(edge.tls.allow, ['CN=orders', 'DNS=*.internal', 'URI=spiffe://prod/*']);
  assert.deepEqual(edge.limits, { maxHeaderSize: 32_768, maxHeaders: 50, maxUriLength: 8_192, headerTimeoutMs: 5_000, idleTimeoutMs: 120_000 });
  assert.deepEqual(edge.routes, [
    { host: 'api.example.com', pathPrefix: '/v1/', upstream: 'api', stripPrefix: true },
    { host: '*.example.com', pathPrefix: null, upstream: 'backend', stripPrefix: false },
  ]);
  const backend = config.upstreams.get('backend');
  assert.ok(backend);
  assert.deepEqual(backend.tls, {
    cert: '/srv/proxy/certs/client.pem', key: '/srv/proxy/certs/client-key.pem', ca: '/srv/proxy/certs/upstream-ca.pem',
    serverName: 'backend.internal', minVersion: 'TLSv1.2',
  });
  assert.deepEqual(backend.pool, { maxConnections: 16, maxPending: 0, idleTimeoutMs: 45_000 });
  assert.deepEqual(backend.healthCheck, { path: '/healthz', intervalMs: 5_000, timeoutMs: 1_000, unhealthyThreshold: 3, healthyThreshold: 2 });
  assert.deepEqual(backend.timeouts, { connectMs: 250, responseHeaderMs: 30_000, idleMs: 60_000 });
  assert.deepEqual(config.upstreams.get('api')?.endpoints, [{ host: 'fd00::1', port: 8443 }, { host: 'api.internal', port: 443 }]);
  assert.equal(config.upstreams.get('api')?.failureBackoffMs, 0);
});

test('address forms: host:port, [v6]:port, :port means every IPv4 interface', () => {
  const address = (text: string) => fromObject(minimal({ listener: { address: text } })).listeners[0]?.address;
  assert.deepEqual(address('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(address('[::1]:8443'), { host: '::1', port: 8443 });
  assert.deepEqual(address(':8443'), { host: '0.0.0.0', port: 8443 });
  assert.deepEqual(address('localhost:9000'), { host: 'localhost', port: 9000 });
  for (const bad of ['8443', '::1:8443', '0.0.0.0:65536', '0.0.0.0:http', 'bad host:1']) {
    assert.deepEqual(paths(errorsOf(() => fromObject(minimal({ listener: { address: bad } })))), ['listeners.edge.address'], bad);
  }
  assert.deepEqual(paths(errorsOf(() => fromObject(minimal({ upstream: { endpoints: [':443', '10.0.0.1:0'] } })))), [
    'upstreams.backend.endpoints[0]', 'upstreams.backend.endpoints[1]',
  ]);
});

test('client_auth defaults to require with client_ca, none without; require/optional need client_ca', () => {
  assert.equal(fromObject(minimal({ tls: { client_ca: 'ca.pem' } })).listeners[0]?.tls.clientAuth, 'require');
  assert.equal(fromObject(minimal({ tls: { client_ca: 'ca.pem', client_auth: 'optional' } })).listeners[0]?.tls.clientAuth, 'optional');
  assert.equal(fromObject(minimal()).listeners[0]?.tls.clientAuth, 'none');
  for (const mode of ['require', 'optional']) {
    const errors = errorsOf(() => fromObject(minimal({ tls: { client_auth: mode } })));
    assert.deepEqual(paths(errors), ['listeners.edge.tls.client_auth']);
    assert.match(errors[0]?.message ?? '', /needs client_ca/);
  }
  assert.deepEqual(paths(errorsOf(() => fromObject(minimal({ tls: { client_ca: 'ca.pem', client_auth: 'always' } })))), ['listeners.edge.tls.client_auth']);
});

test('allow entries need a CN=, DNS= or URI= prefix and a client certificate to apply to', () => {
  const good = ['CN=ok', 'DNS=*.internal', 'DNS=**.internal', 'DNS=exact.internal', 'URI=spiffe://prod/*'];
  assert.deepEqual(fromObject(minimal({ tls: { client_ca: 'ca.pem', allow: good } })).listeners[0]?.tls.allow, good);
  const errors = errorsOf(() => fromObject(minimal({ tls: { client_ca: 'ca.pem', allow: ['CN=ok', 'cn=lower', 'O=Example', 'DNS=', 'DNS=a*.internal', 'DNS=*.*.internal', 'DNS=***.x'] } })));
  assert.deepEqual(paths(errors), [1, 2, 3, 4, 5, 6].map((i) => `listeners.edge.tls.allow[${i}]`));
  assert.match(errors[3]?.message ?? '', /whole left-most label/);
  assert.deepEqual(paths(errorsOf(() => fromObject(minimal({ tls: { allow: ['CN=x'] } })))), ['listeners.edge.tls.allow']);
  assert.deepEqual(paths(errorsOf(() => fromObject(minimal({ tls: { crl: 'crl.pem' } })))), ['listeners.edge.tls.crl']);
});

test('routes: only in http mode, prefixes start with "/", upstreams must exist', () => {
  const route = (r: Record<string, unknown>, listener: Record<string, unknown> = {}) => () => fromObject(minimal({ listener: { routes: [r], ...listener } }));
  assert.deepEqual(paths(errorsOf(route({ upstream: 'backend' }, { mode: 'tcp' }))), ['listeners.edge.routes']);
  assert.deepEqual(paths(errorsOf(route({ path_prefix: 'v1', upstream: 'backend' }))), ['listeners.edge.routes[0].path_prefix']);
  assert.deepEqual(paths(errorsOf(route({ path_prefix: '/v1' }))), ['listeners.edge.routes[0].upstream']);
  const missing = errorsOf(route({ path_prefix: '/v1', upstream: 'nope' }));
  assert.deepEqual(paths(missing), ['listeners.edge.routes[0].upstream']);
  assert.match(missing[0]?.message ?? '', /no upstream named "nope".*backend/);
  assert.deepEqual(paths(errorsOf(route({ upstream: 'backend', strip_prefix: true }))), ['listeners.edge.routes[0].strip_prefix']);
  assert.deepEqual(paths(errorsOf(route({ upstream: 'backend', host: 'bad host' }))), ['listeners.edge.routes[0].host']);
  assert.deepEqual(paths(errorsOf(route({ upstream: 'backend', weight: 3 }))), ['listeners.edge.routes[0].weight']);
  // A tcp listener is fine without routes, and an upstream nobody references is fine.
  const ok = fromObject(minimal({ listener: { mode: 'tcp' }, root: { upstreams: { backend: { endpoints: ['a:1'] }, spare: { endpoints: ['b:2'] } } } }));
  assert.equal(ok.listeners[0]?.mode, 'tcp');
  assert.equal(ok.upstreams.size, 2);
});

test('websocket: a boolean, true by default, http mode only', () => {
  assert.equal(fromObject(minimal({ listener: { websocket: false } })).listeners[0]?.websocket, false);
  assert.deepEqual(paths(errorsOf(() => fromObject(minimal({ listener: { websocket: 'yes' } })))), ['listeners.edge.websocket']);
  const tcp = errorsOf(() => fromObject(minimal({ listener: { mode: 'tcp', websocket: true } })));
  assert.deepEqual(paths(tcp), ['listeners.edge.websocket']);
  assert.match(tcp[0]?.message ?? '', /needs mode = "http"/);
});

test('required keys, wrong types and unknown keys are all reported, not just the first', () => {
  const errors = errorsOf(() => fromObject({
    server: { workers: 0, drain_timeout: 30 },
    log: { level: 'loud' },
    listeners: { edge: { upstream: 'backend', tls: { cert: 5 }, limits: { max_headers: '100', max_header_size: '64 parsecs' } } },
    upstreams: { backend: { endpoints: [], tls: { key: 'k.pem' }, pool: { max_connections: 1.5 } } },
    admni: {},
  }));
  assert.deepEqual(new Set(paths(errors)), new Set([
    'server.workers', 'server.drain_timeout', 'log.level',
    'listeners.edge.address', 'listeners.edge.tls.cert', 'listeners.edge.tls.key',
    'listeners.edge.limits.max_headers', 'listeners.edge.limits.max_header_size',
    'upstreams.backend.endpoints', 'upstreams.backend.tls.cert', 'upstreams.backend.pool.max_connections', 'admni',
  ]));
  const byPath = new Map(errors.map((e) => [e.path, e.message]));
  assert.match(byPath.get('admni') ?? '', /unknown key \(did you mean "admin"\?\)/);
  assert.match(byPath.get('server.drain_timeout') ?? '', /duration string with a unit/);
  assert.match(byPath.get('listeners.edge.tls.cert') ?? '', /must be a string, got the integer 5/);
  assert.match(byPath.get('log.level') ?? '', /"silent"/);
});

test('at least one listener; a listener needs an upstream that exists', () => {
  assert.deepEqual(paths(errorsOf(() => fromObject({ upstreams: { backend: { endpoints: ['a:1'] } } }))), ['listeners']);
  assert.deepEqual(paths(errorsOf(() => fromObject({ listeners: {}, upstreams: {} }))), ['listeners']);
  const errors = errorsOf(() => fromObject(minimal({ listener: { upstream: 'backnd' } })));
  assert.deepEqual(paths(errors), ['listeners.edge.upstream']);
  assert.match(errors[0]?.message ?? '', /known upstreams: backend/);
});

test('two listeners (or a listener and admin) on one address are refused', () => {
  const raw = minimal({ root: { admin: { address: '127.0.0.1:9901' } } });
  const listeners = raw.listeners as Record<string, Record<string, unknown>>;
  listeners.second = { ...listeners.edge, address: '0.0.0.0:8443' };
  listeners.third = { ...listeners.edge, address: '127.0.0.1:9901' };
  listeners.any = { ...listeners.edge, address: '127.0.0.1:0' };
  listeners.any2 = { ...listeners.edge, address: '127.0.0.1:0' };
  assert.deepEqual(paths(errorsOf(() => fromObject(raw))), ['listeners.second.address', 'listeners.third.address']);
});

test('admin: defaults, and password_hash must be a bcrypt hash', () => {
  assert.deepEqual(fromObject(minimal({ root: { admin: {} } })).admin, { address: { host: '127.0.0.1', port: 9901 }, username: 'admin', passwordHash: null });
  const errors = errorsOf(() => fromObject(minimal({ root: { admin: { password_hash: 'secret', username: 'a:b' } } })));
  assert.deepEqual(paths(errors).sort(), ['admin.password_hash', 'admin.username']);
  assert.match(errors.find((e) => e.path === 'admin.password_hash')?.message ?? '', /hash-password/);
});

test('errors point at the line of the key, or of the table that should hold it', () => {
  const text = [
    '[server]',                          // 1
    'workers = 1',                       // 2
    '',                                  // 3
    '[listeners.edge]',                  // 4
    'address = "0.0.0.0:8443"',          // 5
    'upstream = "backend"',              // 6
    '  [listeners.edge.tls]',            // 7
    '  cert = "s.pem"',                  // 8
    '  client_auth = "requier"',         // 9
    '  [[listeners.edge.routes]]',       // 10
    '  path_prefix = "/a"',              // 11
    '  upstream = "backend"',            // 12
    '  [[listeners.edge.routes]]',       // 13
    '  path_prefix = "b"',               // 14
    '  upstream = "backend"',            // 15
    'description = """',                 // 16: still inside routes[1]; the multi-line string below must not be read as keys
    '[not.a.table]',                     // 17
    'key = 1"""',                        // 18
    '',                                  // 19
    '[upstreams.backend]',               // 20
    'endpoints = [',                     // 21
    '  "10.0.0.5:443",',                 // 22
    '  "nohost",',                       // 23
    ']',                                 // 24
    'timeouts = { connect = "fast" }',   // 25
  ].join('\n');
  const errors = errorsOf(() => parseConfigText(text, '/x/mtls-proxy.toml', {}));
  assert.deepEqual(errors.map((e) => `${e.path}@${e.line}`), [
    'listeners.edge.tls.key@7',
    'listeners.edge.tls.client_auth@9',
    'listeners.edge.routes[1].path_prefix@14',
    'listeners.edge.routes[1].description@16',
    'upstreams.backend.endpoints[1]@21',
    'upstreams.backend.timeouts.connect@25',
  ]);
  assert.equal(errors[1]?.toString(), 'listeners.edge.tls.client_auth (line 9): must be one of "require", "optional", "none", got "requier"');
});

test('TOML syntax errors carry the parser line and column', () => {
  const errors = errorsOf(() => parseConfigText('[server]\nworkers = = 2\n', '/x/c.toml', {}));
  assert.equal(errors.length, 1);
  assert.equal(errors[0]?.line, 2);
  assert.match(errors[0]?.message ?? '', /^TOML syntax error at line 2, column \d+: /);
  assert.doesNotMatch(errors[0]?.message ?? '', /\n/);
});
