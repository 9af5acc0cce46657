// What the admin plane (API, dashboard, metrics, request log) sees of the running proxy.
// ProxyServer implements ProxyView; the admin side never reaches into the data path.
import type { Config } from '../config/types.ts';
import type { RequestRecord } from '../http/context.ts';
import type { ClientIdentity } from '../net/identity.ts';
import type { ListenerStats } from '../net/listener.ts';
import type { EndpointReport } from '../pool/upstream-cluster.ts';

export type Phase = 'starting' | 'running' | 'draining' | 'stopped';

export interface ListenerView {
  name: string;
  mode: 'http' | 'tcp';
  /** "127.0.0.1:8443" as bound. */
  address: string;
  upstream: string;
  stats: ListenerStats;
}

export interface UpstreamView {
  name: string;
  endpoints: EndpointReport[];
}

export type CertificateRole = 'listener' | 'client-ca' | 'upstream-client' | 'upstream-ca' | 'client';

export interface CertificateView {
  role: CertificateRole;
  /** Listener or upstream name the certificate belongs to; for role "client", the listener that saw it. */
  owner: string;
  subject: string;
  sans: string[];
  issuer: string;
  notAfter: Date;
  /** Whole days left, rounded down; negative once expired. */
  daysLeft: number;
  /** SHA-256 of the DER, lowercase hex. */
  sha256: string;
}

export interface ReloadReport {
  /** With several workers: each worker's own report (the lists above are merged from them). */
  workers?: Array<{ id: number; pid: number } & Omit<ReloadReport, 'workers'>>;
  /** Key paths whose files changed and were applied ("listeners.edge.tls"). */
  changed: string[];
  unchanged: string[];
  /** Refused reloads: the previous material stays in use. */
  errors: Array<{ what: string; error: string }>;
}

export interface Readiness {
  ready: boolean;
  /** Why not, one line each ("draining", "upstream backend: no healthy endpoint"). */
  reasons: string[];
}

export interface ProxyView {
  readonly version: string;
  /** ms since the epoch. */
  readonly startedAt: number;
  readonly phase: Phase;
  readonly config: Config;
  listeners(): ListenerView[];
  upstreams(): UpstreamView[];
  /** Every certificate the proxy holds, plus client certificates recently presented to it. */
  certificates(): CertificateView[];
  readiness(): Readiness;
  /** Same as SIGHUP. */
  reload(): Promise<ReloadReport>;
}

/** One worker process of a multi-process proxy (server.workers > 1), as /api/status lists it. */
export interface WorkerView {
  /** node:cluster's worker id: unique for the primary's lifetime, a replacement gets a new one. */
  id: number;
  pid: number;
  phase: Phase;
  /** ms since the epoch. */
  startedAt: number;
  openConnections: number;
  accepted: number;
}

export type Awaitable<T> = T | Promise<T>;

/**
 * What the admin listener serves from. A single process answers from its own state (ProxyServer
 * is one); the primary of several workers asks them over IPC, hence the promises.
 */
export interface AdminView {
  readonly version: string;
  readonly startedAt: number;
  readonly phase: Phase;
  readonly config: Config;
  listeners(): Awaitable<ListenerView[]>;
  upstreams(): Awaitable<UpstreamView[]>;
  certificates(): Awaitable<CertificateView[]>;
  readiness(): Awaitable<Readiness>;
  reload(): Promise<ReloadReport>;
  /** Only with several workers: one entry per worker process. */
  workers?(): Promise<WorkerView[]>;
}

/**
 * Events the data path publishes. Subscribers run synchronously on the data path: they must
 * only count or enqueue (never format, await or do I/O per event).
 */
export interface ProxyEvents {
  /** Once per HTTP request, on every path. */
  onRequest(fn: (r: RequestRecord) => void): void;
  /** A TLS handshake failed or a connection was refused after it. */
  onTlsError(fn: (listener: string, reason: string) => void): void;
  /** A client presented a certificate (once per connection). */
  onClientCertificate(fn: (listener: string, id: ClientIdentity) => void): void;
  /** A connection to an upstream endpoint was attempted. */
  onUpstreamConnect(fn: (upstream: string, endpoint: string, seconds: number, ok: boolean) => void): void;
  /** A tcp-mode tunnel ended. */
  onTunnelEnd(fn: (listener: string, bytesIn: number, bytesOut: number) => void): void;
}
