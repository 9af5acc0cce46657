// The admin listener: plain HTTP on admin.address, apart from the proxy's TLS listeners so that
// probes and metrics keep answering while those drain. One routing table; every response,
// including errors and Node's own parse-error answers, carries the security headers; bodies
// are capped at 1 KiB; a failure is a JSON error, never a stack trace.
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { extname, join, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { AdminConfig } from '../config/types.ts';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { CODE_ROOT } from '../paths.ts';
import { AdminApi, ApiError, formatHostPort, type RequestLogLike } from './api.ts';
import { BasicAuth, WWW_AUTHENTICATE, type AuthFailureReason } from './auth.ts';
import type { AdminView } from './types.ts';

export type { RequestLogLike } from './api.ts';

export interface MetricsLike {
  readonly contentType: string;
  render(): Promise<string>;
  authFailure(reason: string): void;
}

export interface AdminServerOptions {
  config: AdminConfig;
  view: AdminView;
  metrics: MetricsLike | null;
  requestLog: RequestLogLike | null;
  logger: Logger;
  /** Folder holding index.html and assets/; default src/admin/dashboard/ beside this file. */
  dashboardDir?: string;
}

/** Request bodies are at most this long: only POST /api/reload takes one, and ignores it. */
export const MAX_BODY_BYTES = 1024;
// Slowloris: a client gets 10 s for its head and 15 s for the whole request (the API's
// requests are tiny); an idle keep-alive connection is closed after 5 s.
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 15_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** Operators, a dashboard and a scraper: a few connections; more is somebody else. */
const MAX_CONNECTIONS = 256;
/** close() lets in-flight requests (a reload, a bcrypt check) finish this long, then cuts. */
const CLOSE_GRACE_MS = 5_000;

const ASSETS_PREFIX = '/assets/';
const DEFAULT_DASHBOARD_DIR = join(CODE_ROOT, 'admin', 'dashboard');

// The dashboard has no inline script or style, so 'self' is all it needs (issue 3).
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
  // Everything here is live state or behind a password: nothing a shared cache should keep.
  'Cache-Control': 'no-store',
};

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
};

const AUTH_MESSAGES: Readonly<Record<Exclude<AuthFailureReason, 'rate_limited'>, string>> = {
  missing: 'credentials required (HTTP Basic)',
  malformed: 'malformed Authorization header: expected "Basic " and base64 of user:password',
  bad_credentials: 'wrong user name or password',
  no_password_configured: 'no admin.password_hash is configured, so nobody can sign in; make one with `mtls-proxy hash-password`',
};

type Method = 'GET' | 'POST';

interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  path: string;
  query: URLSearchParams;
}

interface Route {
  /** Behind Basic auth. */
  auth: boolean;
  methods: Partial<Record<Method, (x: Exchange) => Promise<void> | void>>;
}

/** The admin plane's HTTP server; start after the pools, stop after the listeners drained. */
export class AdminServer {
  readonly #config: AdminConfig;
  readonly #view: AdminView;
  readonly #metrics: MetricsLike | null;
  readonly #log: Logger;
  readonly #api: AdminApi;
  readonly #auth: BasicAuth;
  readonly #dashboardDir: string;
  /** Exact paths; "/assets/{path}" is the one prefix route, matched in #match. */
  readonly #routes: ReadonlyMap<string, Route>;
  readonly #server: http.Server;
  #closing: Promise<void> | null = null;

  constructor(opts: AdminServerOptions) {
    this.#config = opts.config;
    this.#view = opts.view;
    this.#metrics = opts.metrics;
    this.#log = opts.logger.child({ component: 'admin' });
    this.#api = new AdminApi(opts.view, opts.requestLog);
    this.#auth = new BasicAuth({ username: opts.config.username, passwordHash: opts.config.passwordHash, failures: opts.metrics });
    this.#dashboardDir = opts.dashboardDir ?? DEFAULT_DASHBOARD_DIR;
    this.#routes = this.#buildRoutes();
    this.#server = http.createServer({
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      // How often the two timeouts above are checked (default 30 s, which would let a slow
      // client hold a connection up to 40 s instead of 10).
      connectionsCheckingInterval: 1_000,
    }, (req, res) => { void this.#handle(req, res); });
    this.#server.maxConnections = MAX_CONNECTIONS;
    this.#server.on('clientError', this.#onClientError);
  }

  #buildRoutes(): Map<string, Route> {
    const api = this.#api;
    const json = (body: () => Promise<object> | object) => async (x: Exchange): Promise<void> => sendJson(x.res, 200, await body());
    return new Map<string, Route>([
      ['/healthz', { auth: false, methods: { GET: ({ res }) => send(res, 200, 'text/plain; charset=utf-8', 'ok') } }],
      ['/readyz', { auth: false, methods: { GET: async ({ res }) => {
        const r = await this.#view.readiness();
        sendJson(res, r.ready ? 200 : 503, { ready: r.ready, reasons: r.reasons });
      } } }],
      ['/metrics', { auth: false, methods: { GET: async ({ res }) => {
        if (this.#metrics === null) throw new ApiError(404, 'not_found', 'metrics are not enabled in this process');
        send(res, 200, this.#metrics.contentType, await this.#metrics.render());
      } } }],
      ['/', { auth: true, methods: { GET: (x) => this.#serveFile(x, 'index.html') } }],
      ['/assets/{path}', { auth: true, methods: { GET: (x) => this.#serveFile(x, x.path.slice(1)) } }],
      ['/api/status', { auth: true, methods: { GET: json(() => api.status()) } }],
      ['/api/upstreams', { auth: true, methods: { GET: json(() => api.upstreams()) } }],
      ['/api/requests', { auth: true, methods: { GET: async (x) => sendJson(x.res, 200, await api.requests(x.query)) } }],
      ['/api/certificates', { auth: true, methods: { GET: json(() => api.certificates()) } }],
      ['/api/config', { auth: true, methods: { GET: json(() => api.config()) } }],
      ['/api/reload', { auth: true, methods: { POST: async ({ req, res }) => {
        this.#log.info({ client: clientAddress(req) }, 'reload requested through the admin API');
        sendJson(res, 200, await api.reload());
      } } }],
    ]);
  }

  /** Every path and method served, in OpenAPI's path syntax, for the document's test. HEAD goes with GET. */
  routes(): Array<{ path: string; methods: Method[] }> {
    return [...this.#routes].map(([path, r]) => ({ path, methods: Object.keys(r.methods) as Method[] }));
  }

  #match(path: string): Route | undefined {
    if (path.startsWith(ASSETS_PREFIX)) return path.length > ASSETS_PREFIX.length ? this.#routes.get('/assets/{path}') : undefined;
    return path.includes('{') ? undefined : this.#routes.get(path);
  }

  /** Binds admin.address (port 0 = any free port). */
  listen(): Promise<AddressInfo> {
    const { host, port } = this.#config.address;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        reject(new ConfigError('admin.address', `cannot listen on ${formatHostPort(this.#config.address)}: ${err.message}`, { cause: err }));
      };
      this.#server.once('error', onError);
      this.#server.listen({ host, port }, () => {
        this.#server.off('error', onError);
        this.#server.on('error', (err) => this.#log.error({ err }, 'admin listener error'));
        resolve(this.address());
      });
    });
  }

  address(): AddressInfo {
    const a = this.#server.address();
    if (a === null || typeof a !== 'object') throw new Error('the admin server is not listening');
    return a;
  }

  /** Stop accepting, let in-flight requests finish (at most 5 s), close keep-alive sockets. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      if (!this.#server.listening) return resolve();
      const timer = setTimeout(() => this.#server.closeAllConnections(), CLOSE_GRACE_MS).unref();
      this.#server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.#server.closeIdleConnections();
    });
    return this.#closing;
  }

  /** Close now, cutting requests in flight. Idempotent. */
  destroy(): void {
    void this.close();
    this.#server.closeAllConnections();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    try {
      await this.#dispatch(req, res);
    } catch (err) {
      if (err instanceof ApiError) {
        if (!res.headersSent) sendError(res, err.status, err.code, err.message);
        return;
      }
      if (req.socket.destroyed) {
        this.#log.debug({ err }, 'admin client went away');
        return;
      }
      this.#log.error({ err, method: req.method, path: pathOf(req.url) }, 'admin request failed');
      if (res.headersSent) res.destroy();
      else sendError(res, 500, 'internal', 'internal error');
    }
  }

  async #dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = pathOf(req.url);
    // First, whatever the route: an unread body would otherwise be drained by Node after the
    // response, however long it is.
    if (!(await readSmallBody(req))) {
      // Not read to the end, so the connection cannot carry another request.
      return sendError(res, 413, 'payload_too_large', `request bodies are limited to ${MAX_BODY_BYTES} bytes`, { Connection: 'close' });
    }
    const route = this.#match(path);
    if (route === undefined) return sendError(res, 404, 'not_found', 'no such endpoint');
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? '');
    // Own properties only: route.methods is an object literal with a prototype.
    const handler = Object.hasOwn(route.methods, method) ? route.methods[method as Method] : undefined;
    if (handler === undefined) {
      const allow = Object.keys(route.methods).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m])).join(', ');
      return sendError(res, 405, 'method_not_allowed', `${req.method} is not allowed here; use ${allow}`, { Allow: allow });
    }
    if (method === 'POST' && isCrossSite(req)) {
      // A browser that holds the Basic credentials would attach them to a cross-site form POST.
      return sendError(res, 403, 'forbidden', 'cross-site requests are refused');
    }
    if (route.auth && !(await this.#authorize(req, res))) return;
    let query: URLSearchParams;
    try {
      query = new URL(req.url ?? '/', 'http://admin').searchParams;
    } catch {
      return sendError(res, 400, 'bad_request', 'malformed request target');
    }
    await handler({ req, res, path, query });
  }

  async #authorize(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const client = clientAddress(req);
    const result = await this.#auth.check(req.headers.authorization, client);
    if (result.ok) return true;
    if (result.reason === 'rate_limited') {
      // debug: a locked-out client can send these as fast as it likes; the lockout itself is a warning below.
      this.#log.debug({ client, retryAfterSeconds: result.retryAfterSeconds }, 'admin login refused: too many failed attempts');
      sendError(res, 429, 'too_many_attempts', `too many failed sign-in attempts from this address; retry in ${result.retryAfterSeconds} s`, { 'Retry-After': String(result.retryAfterSeconds) });
      return false;
    }
    if (result.reason === 'bad_credentials' || result.reason === 'malformed') {
      this.#log.info({ client, reason: result.reason }, 'admin login failed');
      const lockedMs = this.#auth.limiter.waitMs(client);
      if (lockedMs > 0) this.#log.warn({ client, lockedMs }, 'admin login locked for this address after repeated failures');
    }
    sendError(res, 401, 'unauthorized', AUTH_MESSAGES[result.reason], { 'WWW-Authenticate': WWW_AUTHENTICATE });
    return false;
  }

  async #serveFile({ req, res }: Exchange, relative: string): Promise<void> {
    const file = await this.#resolveAsset(relative);
    if (file === null) return sendError(res, 404, 'not_found', 'no such file');
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPES[extname(file.path).toLowerCase()] ?? 'application/octet-stream',
      'Content-Length': file.size,
    });
    if (req.method === 'HEAD') return void res.end();
    await pipeline(createReadStream(file.path), res);
  }

  /** A regular file inside the dashboard folder, or null: no dot segments, no escape through links. */
  async #resolveAsset(relative: string): Promise<{ path: string; size: number } | null> {
    const segments: string[] = [];
    for (const raw of relative.split('/')) {
      let s: string;
      try {
        s = decodeURIComponent(raw);
      } catch {
        return null;
      }
      // '..' and hidden files; an encoded '/' or '\' would smuggle a separator past the split.
      if (s === '' || s.startsWith('.') || /[/\\\0]/.test(s)) return null;
      segments.push(s);
    }
    try {
      const root = await realpath(this.#dashboardDir);
      const path = await realpath(join(root, ...segments));
      if (!path.startsWith(root + sep)) return null;
      const info = await stat(path);
      return info.isFile() ? { path, size: info.size } : null;
    } catch {
      return null;
    }
  }

  // Node answers unparsable requests itself with a bare 400; ours carries the headers and a JSON body.
  readonly #onClientError = (err: Error & { code?: string }, socket: Socket): void => {
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent === true) {
      socket.destroy();
      return;
    }
    const [status, reason, message] =
      err.code === 'HPE_HEADER_OVERFLOW' ? [431, 'Request Header Fields Too Large', 'request headers too large'] as const
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? [408, 'Request Timeout', 'request took too long'] as const
          : [400, 'Bad Request', 'malformed HTTP request'] as const;
    const body = JSON.stringify({ error: status === 400 ? 'bad_request' : status === 408 ? 'request_timeout' : 'headers_too_large', message });
    const headers = Object.entries({ ...SECURITY_HEADERS, 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close' })
      .map(([k, v]) => `${k}: ${v}\r\n`).join('');
    socket.end(`HTTP/1.1 ${status} ${reason}\r\n${headers}\r\n${body}`);
  };
}

function pathOf(url: string | undefined): string {
  const u = url ?? '/';
  const end = u.search(/[?#]/);
  return end < 0 ? u : u.slice(0, end);
}

function clientAddress(req: IncomingMessage): string {
  const a = req.socket.remoteAddress ?? 'unknown';
  // One client, one bucket, whether it came in over IPv4 or an IPv4-mapped IPv6 socket.
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

function isCrossSite(req: IncomingMessage): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') return true;
  const origin = req.headers.origin;
  if (origin === undefined) return false;
  try {
    return new URL(origin).host !== req.headers.host;
  } catch {
    return true;
  }
}

/** Reads and drops a body of at most MAX_BODY_BYTES; false when it is (or says it is) longer. */
function readSmallBody(req: IncomingMessage): Promise<boolean> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > MAX_BODY_BYTES) return Promise.resolve(false);
  if (req.complete) return Promise.resolve(true);
  return new Promise((resolve, reject) => {
    let seen = 0;
    const done = (ok: boolean): void => {
      req.off('data', onData).off('end', onEnd).off('error', onError);
      resolve(ok);
    };
    const onData = (chunk: Buffer): void => {
      seen += chunk.length;
      if (seen > MAX_BODY_BYTES) {
        req.pause();
        done(false);
      }
    };
    const onEnd = (): void => done(true);
    const onError = (err: Error): void => {
      req.off('data', onData).off('end', onEnd);
      reject(err);
    };
    req.on('data', onData).on('end', onEnd).on('error', onError);
  });
}

function send(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  send(res, status, 'application/json; charset=utf-8', JSON.stringify(body), headers);
}

function sendError(res: ServerResponse, status: number, error: string, message: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error, message }, headers);
}
