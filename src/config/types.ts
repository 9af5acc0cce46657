// The validated, normalised configuration. Durations are milliseconds, sizes are bytes,
// paths are absolute (resolved against the config file's folder). The loader
// (src/config/load.ts) is the only producer; everything else reads these types.

export interface HostPort {
  host: string;
  port: number;
}

export type ClientAuth = 'require' | 'optional' | 'none';
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

export interface ListenerTlsConfig {
  cert: string;
  key: string;
  clientCa: string | null;
  clientAuth: ClientAuth;
  /** Allow-list entries as written: "CN=orders", "DNS=*.internal", "URI=spiffe://prod/*". Empty = any chaining cert. */
  allow: string[];
  minVersion: TlsVersion;
  crl: string | null;
  handshakeTimeoutMs: number;
}

export interface ListenerLimits {
  maxHeaderSize: number;
  maxHeaders: number;
  /** Longest request-target accepted; longer -> 414. */
  maxUriLength: number;
  headerTimeoutMs: number;
  idleTimeoutMs: number;
}

export interface RouteConfig {
  /** Exact host or "*.suffix"; null matches any host. */
  host: string | null;
  pathPrefix: string | null;
  upstream: string;
  stripPrefix: boolean;
}

export interface ListenerConfig {
  name: string;
  address: HostPort;
  mode: 'http' | 'tcp';
  upstream: string;
  /** http mode: WebSocket handshakes are forwarded and, on a 101, tunnelled (else dropped like every other Upgrade). */
  websocket: boolean;
  tls: ListenerTlsConfig;
  limits: ListenerLimits;
  routes: RouteConfig[];
}

export interface UpstreamTlsConfig {
  cert: string | null;
  key: string | null;
  ca: string | null;
  serverName: string | null;
  minVersion: TlsVersion;
}

export interface PoolConfig {
  maxConnections: number;
  maxPending: number;
  idleTimeoutMs: number;
}

export interface HealthCheckConfig {
  path: string;
  intervalMs: number;
  timeoutMs: number;
  unhealthyThreshold: number;
  healthyThreshold: number;
}

export interface UpstreamTimeouts {
  connectMs: number;
  responseHeaderMs: number;
  idleMs: number;
}

export interface UpstreamConfig {
  name: string;
  endpoints: HostPort[];
  tls: UpstreamTlsConfig;
  pool: PoolConfig;
  healthCheck: HealthCheckConfig | null;
  timeouts: UpstreamTimeouts;
  /** How long a failed connect keeps an endpoint out of rotation (passive health). */
  failureBackoffMs: number;
}

export interface AdminConfig {
  address: HostPort;
  username: string;
  passwordHash: string | null;
}

export interface LogConfig {
  level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  format: 'json' | 'pretty';
}

export interface RequestLogConfig {
  path: string;
  retentionMs: number;
  maxRows: number;
}

export interface ServerConfig {
  drainTimeoutMs: number;
  workers: number | 'auto';
}

export interface Config {
  /** Absolute path of the file this came from, or null for an in-memory config (demo, tests). */
  source: string | null;
  server: ServerConfig;
  admin: AdminConfig | null;
  log: LogConfig;
  requestLog: RequestLogConfig | null;
  listeners: ListenerConfig[];
  upstreams: Map<string, UpstreamConfig>;
}
