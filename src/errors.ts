// Errors are data (undici lib/core/errors.js, Pingora's ErrorSource): one base class, a
// stable `code` that metrics, the request log and tests match on, the side that caused it,
// the HTTP status it maps to when the proxy answers locally, and whether a retry may help.

export type ErrorSource = 'downstream' | 'upstream' | 'internal';

export const ErrorCodes = {
  // downstream: the client sent something we refuse
  BAD_REQUEST: { status: 400, source: 'downstream', retryable: false },
  AMBIGUOUS_FRAMING: { status: 400, source: 'downstream', retryable: false },
  BAD_METHOD: { status: 400, source: 'downstream', retryable: false },
  TRANSFER_CODING_NOT_IMPLEMENTED: { status: 501, source: 'downstream', retryable: false },
  URI_TOO_LONG: { status: 414, source: 'downstream', retryable: false },
  HEADERS_TOO_LARGE: { status: 431, source: 'downstream', retryable: false },
  TOO_MANY_HEADERS: { status: 431, source: 'downstream', retryable: false },
  VERSION_NOT_SUPPORTED: { status: 505, source: 'downstream', retryable: false },
  HEADER_TIMEOUT: { status: 408, source: 'downstream', retryable: false },
  FORBIDDEN: { status: 403, source: 'downstream', retryable: false },
  CLIENT_ABORTED: { status: 499, source: 'downstream', retryable: false },
  CLIENT_TIMEOUT: { status: 408, source: 'downstream', retryable: false },
  // upstream: the origin or the way to it failed
  UPSTREAM_CONNECT: { status: 502, source: 'upstream', retryable: true },
  UPSTREAM_TLS: { status: 502, source: 'upstream', retryable: false },
  UPSTREAM_RESET: { status: 502, source: 'upstream', retryable: true },
  UPSTREAM_BAD_RESPONSE: { status: 502, source: 'upstream', retryable: false },
  UPSTREAM_RESPONSE_TIMEOUT: { status: 504, source: 'upstream', retryable: false },
  UPSTREAM_IDLE_TIMEOUT: { status: 504, source: 'upstream', retryable: false },
  UPSTREAM_ABORTED: { status: 502, source: 'upstream', retryable: false },
  NO_HEALTHY_ENDPOINT: { status: 503, source: 'upstream', retryable: false },
  POOL_QUEUE_FULL: { status: 503, source: 'upstream', retryable: false },
  POOL_ACQUIRE_TIMEOUT: { status: 503, source: 'upstream', retryable: false },
  // internal
  INTERNAL: { status: 500, source: 'internal', retryable: false },
  DRAINING: { status: 503, source: 'internal', retryable: false },
  CONFIG: { status: 500, source: 'internal', retryable: false },
  CERTIFICATE: { status: 500, source: 'internal', retryable: false },
} as const satisfies Record<string, { status: number; source: ErrorSource; retryable: boolean }>;

export type ErrorKind = keyof typeof ErrorCodes;
export type ErrorCode = `MTLS_ERR_${ErrorKind}`;

export class ProxyError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly status: number;
  readonly source: ErrorSource;
  readonly retryable: boolean;

  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    const spec = ErrorCodes[kind];
    this.name = 'ProxyError';
    this.kind = kind;
    this.code = `MTLS_ERR_${kind}`;
    this.status = spec.status;
    this.source = spec.source;
    this.retryable = spec.retryable;
  }
}

/** A config or certificate problem: `path` is the key path ("listeners.edge.tls.cert"). */
export class ConfigError extends ProxyError {
  readonly path: string;
  readonly line: number | null;
  constructor(path: string, message: string, options?: { line?: number | null; cause?: unknown }) {
    super('CONFIG', message, options);
    this.name = 'ConfigError';
    this.path = path;
    this.line = options?.line ?? null;
  }
  override toString(): string {
    const where = this.line !== null ? ` (line ${this.line})` : '';
    return `${this.path}${where}: ${this.message}`;
  }
}

export function isProxyError(err: unknown): err is ProxyError {
  return err instanceof ProxyError;
}
