// The /api handlers: JSON bodies built from an AdminView and the request log, in the shapes of
// docs/admin-api.yaml (snake_case keys, ISO 8601 UTC times). Handlers return plain data or
// throw ApiError; the server (server.ts) owns HTTP, auth and headers.
import type { Config, HostPort, ListenerConfig, UpstreamConfig } from '../config/types.ts';
import { formatDuration, formatSize } from '../config/units.ts';
import type { AdminView, CertificateView, ReloadReport } from './types.ts';

/** Rows returned when the request does not say `limit`, and the most one answer holds. */
export const DEFAULT_REQUEST_LIMIT = 100;
export const MAX_REQUEST_LIMIT = 1000;
/** Longest filter value accepted: the columns they match are names, subjects and addresses. */
const MAX_FILTER_LENGTH = 1024;

/** The columns of a request log row the API answers with, in order (PRODUCT.md "Request log row"). */
const ROW_COLUMNS = [
  'id', 'ts', 'listener', 'client_addr', 'client_subject', 'client_sha256', 'method', 'host', 'path',
  'status', 'upstream', 'endpoint', 'bytes_in', 'bytes_out', 'duration_ms', 'error',
] as const;

export interface RequestLogFilter {
  limit: number;
  status?: number | { class: number };
  since?: number;
  upstream?: string;
  listener?: string;
  clientSubject?: string;
}

/** A request log row as stored: `ts` in ms since the epoch, the other columns as they are. */
export type RequestLogRow = { readonly [K in (typeof ROW_COLUMNS)[number]]?: unknown } & { readonly ts: number };

export interface RequestLogLike {
  query(filter: RequestLogFilter): Promise<readonly RequestLogRow[]>;
}

/** A refusal with its HTTP status and the contract's error code ("bad_request"). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

const badRequest = (message: string): ApiError => new ApiError(400, 'bad_request', message);

type QueryParser = (value: string, filter: RequestLogFilter) => void;

const nonEmpty = (name: string, value: string): string => {
  if (value === '') throw badRequest(`query parameter "${name}" must not be empty`);
  if (value.length > MAX_FILTER_LENGTH) throw badRequest(`query parameter "${name}" is longer than ${MAX_FILTER_LENGTH} characters`);
  return value;
};

// ISO 8601 calendar date, optionally with a time and an offset; without an offset it is read
// as UTC (the API speaks UTC), not as the server's local time as Date.parse would.
const ISO_RE = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

/** V8's Date.parse rolls "2025-02-30" over into March; an operator meant something else. */
function isCalendarDate(text: string): boolean {
  const [y, m, d] = text.slice(0, 10).split('-').map(Number) as [number, number, number];
  const date = new Date(Date.UTC(y, m - 1, d));
  return date.getUTCMonth() === m - 1 && date.getUTCDate() === d;
}

function parseSince(value: string): number {
  if (/^\d{1,15}$/.test(value)) return Number(value);
  // An unencoded '+' in a query string arrives as a space: "…T12:00:00 02:00".
  const text = value.replace(/ (\d{2}:?\d{2})$/, '+$1');
  const match = ISO_RE.exec(text);
  const ms = match === null || !isCalendarDate(text) ? NaN : Date.parse(text.includes('T') && match[1] === undefined ? `${text}Z` : text);
  if (!Number.isFinite(ms)) throw badRequest(`query parameter "since" must be an ISO 8601 time ("2025-01-31T12:00:00Z") or epoch milliseconds, got "${value}"`);
  return ms;
}

const QUERY_PARAMS: ReadonlyMap<string, QueryParser> = new Map<string, QueryParser>([
  ['limit', (v, f) => {
    if (!/^\d{1,15}$/.test(v) || Number(v) < 1) throw badRequest(`query parameter "limit" must be a whole number from 1 (values above ${MAX_REQUEST_LIMIT} are capped), got "${v}"`);
    f.limit = Math.min(Number(v), MAX_REQUEST_LIMIT);
  }],
  ['status', (v, f) => {
    if (/^[1-5]\d\d$/.test(v)) f.status = Number(v);
    else if (/^[1-5]xx$/i.test(v)) f.status = { class: Number(v[0]) };
    else throw badRequest(`query parameter "status" must be a status code ("502") or a class ("5xx"), got "${v}"`);
  }],
  ['since', (v, f) => { f.since = parseSince(v); }],
  ['upstream', (v, f) => { f.upstream = nonEmpty('upstream', v); }],
  ['listener', (v, f) => { f.listener = nonEmpty('listener', v); }],
  ['client_subject', (v, f) => { f.clientSubject = nonEmpty('client_subject', v); }],
]);

/** Validate /api/requests query parameters into a request log filter; ApiError 400 naming the parameter. */
export function parseRequestQuery(params: URLSearchParams): RequestLogFilter {
  const filter: RequestLogFilter = { limit: DEFAULT_REQUEST_LIMIT };
  const seen = new Set<string>();
  for (const [name, value] of params) {
    const parse = QUERY_PARAMS.get(name);
    if (parse === undefined) throw badRequest(`unknown query parameter "${name.slice(0, 64)}"; known: ${[...QUERY_PARAMS.keys()].join(', ')}`);
    // A repeated filter would have to mean "or" or "last wins"; refusing it leaves no doubt.
    if (seen.has(name)) throw badRequest(`query parameter "${name}" is given more than once`);
    seen.add(name);
    parse(value, filter);
  }
  return filter;
}

const iso = (ms: number | Date): string => new Date(ms).toISOString();

export function formatHostPort(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Builds the JSON bodies of the /api endpoints. */
export class AdminApi {
  readonly #view: AdminView;
  readonly #requestLog: RequestLogLike | null;

  constructor(view: AdminView, requestLog: RequestLogLike | null) {
    this.#view = view;
    this.#requestLog = requestLog;
  }

  async status(): Promise<object> {
    const v = this.#view;
    const [views, workers] = await Promise.all([v.listeners(), v.workers?.()]);
    const listeners = views.map((l) => ({
      name: l.name,
      mode: l.mode,
      address: l.address,
      upstream: l.upstream,
      open_connections: l.stats.open,
      accepted: l.stats.accepted,
      refused: l.stats.refused,
      tls_errors: Object.fromEntries(l.stats.tlsErrors),
    }));
    return {
      version: v.version,
      phase: v.phase,
      started_at: iso(v.startedAt),
      uptime_seconds: Math.round((Date.now() - v.startedAt) / 100) / 10,
      open_connections: listeners.reduce((n, l) => n + l.open_connections, 0),
      listeners,
      ...(workers === undefined ? {} : {
        workers: workers.map((w) => ({
          id: w.id, pid: w.pid, phase: w.phase, started_at: iso(w.startedAt), open_connections: w.openConnections, accepted: w.accepted,
        })),
      }),
    };
  }

  async upstreams(): Promise<object> {
    return {
      upstreams: (await this.#view.upstreams()).map((u) => ({
        name: u.name,
        endpoints: u.endpoints.map((e) => ({
          endpoint: e.endpoint,
          healthy: e.healthy,
          last_error: e.lastError,
          pool: { size: e.size, idle: e.idle, busy: e.busy, pending: e.pending },
        })),
      })),
    };
  }

  async requests(params: URLSearchParams): Promise<object> {
    const filter = parseRequestQuery(params);
    if (this.#requestLog === null) return { requests: [], enabled: false };
    return { requests: (await this.#requestLog.query(filter)).map(toApiRow) };
  }

  async certificates(): Promise<object> {
    const certs = [...(await this.#view.certificates())].sort((a, b) => a.daysLeft - b.daysLeft || a.notAfter.getTime() - b.notAfter.getTime());
    return { certificates: certs.map(toApiCertificate) };
  }

  config(): object {
    return serializeConfig(this.#view.config);
  }

  async reload(): Promise<object> {
    const r = await this.#view.reload();
    const body = (x: Omit<ReloadReport, 'workers'>): object => ({ changed: x.changed, unchanged: x.unchanged, errors: x.errors.map((e) => ({ what: e.what, error: e.error })) });
    return r.workers === undefined ? body(r) : { ...body(r), workers: r.workers.map((w) => ({ id: w.id, pid: w.pid, ...body(w) })) };
  }
}

function toApiRow(row: RequestLogRow): Record<string, unknown> {
  // Only the documented columns, so a column added to the table is not published by accident.
  const out: Record<string, unknown> = {};
  for (const c of ROW_COLUMNS) out[c] = row[c] ?? null;
  out.ts = iso(row.ts);
  return out;
}

function toApiCertificate(c: CertificateView): object {
  return {
    role: c.role, owner: c.owner, subject: c.subject, sans: c.sans, issuer: c.issuer,
    not_after: iso(c.notAfter), days_left: c.daysLeft, sha256: c.sha256,
  };
}

/**
 * The effective config in the TOML's shape and key names, defaults filled in. Built key by key
 * from an allow-list rather than by walking the object: a field added to Config later (a secret,
 * say) stays out until someone decides it belongs here. Paths are shown, never read.
 */
export function serializeConfig(cfg: Config): object {
  return {
    server: { drain_timeout: formatDuration(cfg.server.drainTimeoutMs), workers: cfg.server.workers },
    admin: cfg.admin === null ? null : {
      address: formatHostPort(cfg.admin.address),
      username: cfg.admin.username,
      password_hash: cfg.admin.passwordHash === null ? null : '[redacted]',
    },
    log: { level: cfg.log.level, format: cfg.log.format },
    request_log: cfg.requestLog === null ? null : {
      path: cfg.requestLog.path,
      retention: formatDuration(cfg.requestLog.retentionMs),
      max_rows: cfg.requestLog.maxRows,
    },
    listeners: Object.fromEntries(cfg.listeners.map((l) => [l.name, serializeListener(l)])),
    upstreams: Object.fromEntries([...cfg.upstreams].map(([name, u]) => [name, serializeUpstream(u)])),
  };
}

function serializeListener(l: ListenerConfig): object {
  return {
    address: formatHostPort(l.address),
    mode: l.mode,
    upstream: l.upstream,
    websocket: l.websocket,
    tls: {
      cert: l.tls.cert,
      key: l.tls.key,
      client_ca: l.tls.clientCa,
      client_auth: l.tls.clientAuth,
      allow: l.tls.allow,
      min_version: l.tls.minVersion,
      crl: l.tls.crl,
      handshake_timeout: formatDuration(l.tls.handshakeTimeoutMs),
    },
    limits: {
      max_header_size: formatSize(l.limits.maxHeaderSize),
      max_headers: l.limits.maxHeaders,
      max_uri_length: formatSize(l.limits.maxUriLength),
      header_timeout: formatDuration(l.limits.headerTimeoutMs),
      idle_timeout: formatDuration(l.limits.idleTimeoutMs),
    },
    routes: l.routes.map((r) => ({ host: r.host, path_prefix: r.pathPrefix, upstream: r.upstream, strip_prefix: r.stripPrefix })),
  };
}

function serializeUpstream(u: UpstreamConfig): object {
  const h = u.healthCheck;
  return {
    endpoints: u.endpoints.map(formatHostPort),
    tls: { cert: u.tls.cert, key: u.tls.key, ca: u.tls.ca, server_name: u.tls.serverName, min_version: u.tls.minVersion },
    pool: { max_connections: u.pool.maxConnections, max_pending: u.pool.maxPending, idle_timeout: formatDuration(u.pool.idleTimeoutMs) },
    health_check: h === null ? null : {
      path: h.path,
      interval: formatDuration(h.intervalMs),
      timeout: formatDuration(h.timeoutMs),
      unhealthy_threshold: h.unhealthyThreshold,
      healthy_threshold: h.healthyThreshold,
    },
    timeouts: {
      connect: formatDuration(u.timeouts.connectMs),
      response_header: formatDuration(u.timeouts.responseHeaderMs),
      idle: formatDuration(u.timeouts.idleMs),
    },
    failure_backoff: formatDuration(u.failureBackoffMs),
  };
}
