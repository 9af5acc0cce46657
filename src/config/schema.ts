// The config schema: a TOML-shaped object in, the normalised Config (src/config/types.ts) out.
// Every problem is collected rather than thrown at the first, so `mtls-proxy check` can list
// them all at once, and unknown keys are errors: a typo such as `clent_ca` must not silently
// leave a listener without client authentication.
import { ConfigError } from '../errors.ts';
import type { ClientAuth, Config, HostPort, ListenerConfig, LogConfig, RouteConfig, TlsVersion, UpstreamConfig } from './types.ts';
import { Issues, Section, parseHostPort, type LineOf } from './section.ts';

export type { LineOf } from './section.ts';

/** Every problem found in one config, in file order; the first also fills path/line/message. */
export class ConfigErrors extends ConfigError {
  readonly errors: readonly ConfigError[];
  constructor(errors: readonly ConfigError[]) {
    const first = errors[0] ?? new ConfigError('', 'invalid config');
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
    super(first.path, `${first.message}${more}`, { line: first.line });
    this.name = 'ConfigErrors';
    this.errors = errors.length > 0 ? errors : [first];
  }
}

export interface ValidateOptions {
  baseDir: string;
  source: string | null;
  lineOf: LineOf;
  /** Problems found before validation (environment expansion) to report together. */
  initialErrors?: readonly ConfigError[];
}

const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const satisfies readonly TlsVersion[];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const satisfies ReadonlyArray<LogConfig['level']>;
const ALLOW_ENTRY = /^(CN|DNS|URI)=.+$/;
// bcrypt's modular crypt format: $2a$/$2b$/$2y$, two-digit cost, 22 salt + 31 hash characters.
const BCRYPT_HASH = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
const ROUTE_HOST = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?(:\d{1,5})?$/;

const ROOT_KEYS = ['server', 'admin', 'log', 'request_log', 'listeners', 'upstreams'];
const LISTENER_KEYS = ['address', 'mode', 'upstream', 'websocket', 'tls', 'limits', 'routes'];
const LISTENER_TLS_KEYS = ['cert', 'key', 'client_ca', 'client_auth', 'allow', 'min_version', 'crl', 'handshake_timeout'];
const LIMIT_KEYS = ['max_header_size', 'max_headers', 'max_uri_length', 'header_timeout', 'idle_timeout'];
const ROUTE_KEYS = ['host', 'path_prefix', 'upstream', 'strip_prefix'];
const UPSTREAM_KEYS = ['endpoints', 'tls', 'pool', 'health_check', 'timeouts', 'failure_backoff'];
const UPSTREAM_TLS_KEYS = ['cert', 'key', 'ca', 'server_name', 'min_version'];
const POOL_KEYS = ['max_connections', 'max_pending', 'idle_timeout'];
const HEALTH_KEYS = ['path', 'interval', 'timeout', 'unhealthy_threshold', 'healthy_threshold'];
const TIMEOUT_KEYS = ['connect', 'response_header', 'idle'];

const SECOND = 1_000;

/** Validate and normalise; throws ConfigErrors with every problem found. */
export function validateConfig(raw: unknown, opts: ValidateOptions): Config {
  const issues = new Issues(opts.lineOf, opts.baseDir, opts.initialErrors);
  const root = Section.root(issues, raw, ROOT_KEYS);

  const serverSection = root.child('server', ['drain_timeout', 'workers']);
  const server = {
    drainTimeoutMs: serverSection.duration('drain_timeout', 30 * SECOND, { allowZero: true }),
    workers: readWorkers(serverSection),
  };

  const adminSection = root.optionalChild('admin', ['address', 'username', 'password_hash']);
  const admin = adminSection === null ? null : readAdmin(adminSection);

  const logSection = root.child('log', ['level', 'format']);
  const log: LogConfig = {
    level: logSection.oneOf('level', LOG_LEVELS, 'info'),
    format: logSection.oneOf('format', ['json', 'pretty'] as const, 'json'),
  };

  const requestLogSection = root.optionalChild('request_log', ['path', 'retention', 'max_rows']);
  const requestLog = requestLogSection === null ? null : {
    path: requestLogSection.requiredFile('path'),
    retentionMs: requestLogSection.duration('retention', 7 * 86_400 * SECOND),
    maxRows: requestLogSection.int('max_rows', 1_000_000, 1),
  };

  const upstreams = new Map<string, UpstreamConfig>();
  for (const section of root.namedChildren('upstreams', UPSTREAM_KEYS, false)) upstreams.set(section.name, readUpstream(section));

  const listeners: ListenerConfig[] = [];
  for (const section of root.namedChildren('listeners', LISTENER_KEYS, true)) listeners.push(readListener(section, upstreams));

  checkAddressClashes(issues, listeners, admin?.address ?? null);
  if (issues.errors.length > 0) throw new ConfigErrors(issues.sorted());
  return { source: opts.source, server, admin, log, requestLog, listeners, upstreams };
}

function readWorkers(section: Section): number | 'auto' {
  const value = section.value('workers');
  if (value === undefined) return 1;
  if (value === 'auto') return 'auto';
  if (typeof value === 'number' && Number.isInteger(value) && value >= 1) return value;
  section.fail('workers', `must be a whole number of at least 1 or "auto", got ${Section.show(value)}`);
  return 1;
}

function readAdmin(section: Section): NonNullable<Config['admin']> {
  const address = section.address('address', '127.0.0.1:9901', { allowZeroPort: true });
  const username = section.string('username') ?? 'admin';
  if (username === '' || username.includes(':')) section.fail('username', 'must be non-empty and contain no ":" (HTTP Basic separates user and password with it)');
  const passwordHash = section.string('password_hash') ?? null;
  if (passwordHash !== null && !BCRYPT_HASH.test(passwordHash)) {
    section.fail('password_hash', 'is not a bcrypt hash; make one with `mtls-proxy hash-password`');
  }
  return { address, username, passwordHash };
}

function readListener(section: Section, upstreams: ReadonlyMap<string, UpstreamConfig>): ListenerConfig {
  const mode = section.oneOf('mode', ['http', 'tcp'] as const, 'http');
  const upstream = section.requiredString('upstream');
  if (upstream !== '') requireUpstream(section, 'upstream', upstream, upstreams);

  // Every listener terminates TLS; a missing [listeners.NAME.tls] shows up as missing cert and key.
  const tls = section.child('tls', LISTENER_TLS_KEYS);
  const clientCa = tls.file('client_ca');
  const clientAuth: ClientAuth = tls.oneOf('client_auth', ['require', 'optional', 'none'] as const, clientCa === null ? 'none' : 'require');
  if (clientAuth !== 'none' && clientCa === null && tls.has('client_auth')) {
    tls.fail('client_auth', `"${clientAuth}" needs client_ca: the CA bundle client certificates must chain to`);
  }
  const allow = tls.strings('allow');
  allow.forEach((entry, i) => {
    const path = `${tls.at('allow')}[${i}]`;
    if (!ALLOW_ENTRY.test(entry)) return tls.failAt(path, `"${entry}" must start with CN=, DNS= or URI= followed by a value`);
    // Same rule as the matcher (src/net/identity.ts), so `check` reports it before start does.
    const dns = entry.startsWith('DNS=') ? entry.slice(4).replace(/^\*\*?\./, '') : '';
    if (dns.includes('*') || dns.startsWith('.')) {
      tls.failAt(path, `"${entry}": a DNS wildcard must be the whole left-most label ("*.example.com" or "**.example.com")`);
    }
  });
  if (allow.length > 0 && clientAuth === 'none') tls.fail('allow', 'has no effect with client_auth = "none": no client certificate is requested');
  const crl = tls.file('crl');
  if (crl !== null && clientCa === null) tls.fail('crl', 'needs client_ca: a CRL revokes client certificates');

  const limits = section.child('limits', LIMIT_KEYS);
  const routes = section.arrayOfTables('routes', ROUTE_KEYS).map((route) => readRoute(route, upstreams));
  if (mode === 'tcp' && routes.length > 0) section.fail('routes', 'need mode = "http": a tcp listener forwards bytes to its upstream and cannot route');
  const websocket = section.bool('websocket', true);
  if (mode === 'tcp' && section.has('websocket')) section.fail('websocket', 'needs mode = "http": a tcp listener forwards bytes whatever the protocol');

  return {
    name: section.name,
    address: section.requiredAddress('address', { allowZeroPort: true }),
    mode,
    upstream,
    websocket,
    tls: {
      cert: tls.requiredFile('cert'),
      key: tls.requiredFile('key'),
      clientCa,
      clientAuth,
      allow,
      minVersion: tls.oneOf('min_version', TLS_VERSIONS, 'TLSv1.2'),
      crl,
      handshakeTimeoutMs: tls.duration('handshake_timeout', 10 * SECOND),
    },
    limits: {
      maxHeaderSize: limits.size('max_header_size', 64 * 1024),
      maxHeaders: limits.int('max_headers', 100, 1),
      maxUriLength: limits.size('max_uri_length', 8 * 1024),
      headerTimeoutMs: limits.duration('header_timeout', 10 * SECOND),
      idleTimeoutMs: limits.duration('idle_timeout', 60 * SECOND),
    },
    routes,
  };
}

function readRoute(section: Section, upstreams: ReadonlyMap<string, UpstreamConfig>): RouteConfig {
  const host = section.string('host') ?? null;
  if (host !== null && !ROUTE_HOST.test(host)) section.fail('host', `"${host}" must be a host name or "*.suffix"`);
  const pathPrefix = section.string('path_prefix') ?? null;
  if (pathPrefix !== null && !pathPrefix.startsWith('/')) section.fail('path_prefix', `"${pathPrefix}" must start with "/"`);
  const upstream = section.requiredString('upstream');
  if (upstream !== '') requireUpstream(section, 'upstream', upstream, upstreams);
  const stripPrefix = section.bool('strip_prefix', false);
  if (stripPrefix && pathPrefix === null) section.fail('strip_prefix', 'needs path_prefix: there is no prefix to strip');
  return { host: host?.toLowerCase() ?? null, pathPrefix, upstream, stripPrefix };
}

function requireUpstream(section: Section, key: string, name: string, upstreams: ReadonlyMap<string, UpstreamConfig>): void {
  if (upstreams.has(name)) return;
  const known = [...upstreams.keys()];
  const hint = known.length > 0 ? `known upstreams: ${known.join(', ')}` : 'no [upstreams.NAME] is defined';
  section.fail(key, `no upstream named "${name}" (${hint})`);
}

function readUpstream(section: Section): UpstreamConfig {
  const endpoints = section.strings('endpoints');
  if (!section.has('endpoints')) section.fail('endpoints', 'is required: a list of "host:port"');
  else if (endpoints.length === 0) section.fail('endpoints', 'must list at least one "host:port"');
  const seen = new Set<string>();
  const parsed: HostPort[] = [];
  endpoints.forEach((text, i) => {
    const path = `${section.at('endpoints')}[${i}]`;
    const result = parseHostPort(text, { allowZeroPort: false, requireHost: true });
    if (typeof result === 'string') return section.failAt(path, result);
    const key = `${result.host}:${result.port}`;
    if (seen.has(key)) return section.failAt(path, `"${text}" is listed twice`);
    seen.add(key);
    parsed.push(result);
  });

  const tls = section.child('tls', UPSTREAM_TLS_KEYS);
  const cert = tls.file('cert');
  const key = tls.file('key');
  if (cert !== null && key === null) tls.fail('key', 'is required when cert is set');
  if (key !== null && cert === null) tls.fail('cert', 'is required when key is set');
  const serverName = tls.string('server_name') ?? null;
  if (serverName === '') tls.fail('server_name', 'must not be empty; leave it out to use the endpoint host');

  const pool = section.child('pool', POOL_KEYS);
  const healthSection = section.optionalChild('health_check', HEALTH_KEYS);
  const timeouts = section.child('timeouts', TIMEOUT_KEYS);
  return {
    name: section.name,
    endpoints: parsed,
    tls: { cert, key, ca: tls.file('ca'), serverName, minVersion: tls.oneOf('min_version', TLS_VERSIONS, 'TLSv1.2') },
    pool: {
      maxConnections: pool.int('max_connections', 128, 1),
      maxPending: pool.int('max_pending', 1024, 0),
      idleTimeoutMs: pool.duration('idle_timeout', 30 * SECOND),
    },
    healthCheck: healthSection === null ? null : readHealthCheck(healthSection),
    timeouts: {
      connectMs: timeouts.duration('connect', 2 * SECOND),
      responseHeaderMs: timeouts.duration('response_header', 30 * SECOND),
      idleMs: timeouts.duration('idle', 60 * SECOND),
    },
    failureBackoffMs: section.duration('failure_backoff', 5 * SECOND, { allowZero: true }),
  };
}

function readHealthCheck(section: Section): NonNullable<UpstreamConfig['healthCheck']> {
  const path = section.string('path') ?? '/healthz';
  if (!path.startsWith('/')) section.fail('path', `"${path}" must start with "/"`);
  return {
    path,
    intervalMs: section.duration('interval', 5 * SECOND),
    timeoutMs: section.duration('timeout', 1 * SECOND),
    unhealthyThreshold: section.int('unhealthy_threshold', 3, 1),
    healthyThreshold: section.int('healthy_threshold', 2, 1),
  };
}

// Two listeners on one port fail at bind time with EADDRINUSE; saying which keys clash is kinder.
function checkAddressClashes(issues: Issues, listeners: readonly ListenerConfig[], admin: HostPort | null): void {
  const taken = new Map<string, string>();
  if (admin !== null && admin.port !== 0) taken.set(`${admin.host}:${admin.port}`, 'admin.address');
  for (const listener of listeners) {
    const { host, port } = listener.address;
    if (port === 0 || host === '') continue;
    const key = `${host}:${port}`;
    const path = `listeners.${listener.name}.address`;
    const other = taken.get(key);
    if (other !== undefined) issues.add(path, `"${key}" is already used by ${other}`);
    else taken.set(key, path);
  }
}
