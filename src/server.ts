// The process: phases starting -> running -> draining -> stopped (STYLE.md). Start order:
// config -> TLS -> pools -> health checks -> (request log -> admin) -> listeners; stop in
// reverse after draining. Signals: SIGTERM/SIGINT drain and exit 0, SIGHUP reloads
// certificates without dropping connections.
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import type {
  CertificateRole, CertificateView, ListenerView, Phase, ProxyEvents, ProxyView, Readiness, ReloadReport, UpstreamView,
} from './admin/types.ts';
// The admin plane is imported when the config has it: prom-client, better-sqlite3 and bcrypt
// cost ~20 MiB of RSS that a bare proxy has no use for.
import type { Metrics } from './admin/metrics.ts';
import type { RequestLog } from './admin/request-log.ts';
import type { AdminServer } from './admin/server.ts';
import { describeCertificate } from './certs/inspect.ts';
import type { Config, ListenerConfig } from './config/types.ts';
import type { ListenerContext, RequestRecord } from './http/context.ts';
import { DownstreamConnection } from './http/downstream.ts';
import { Router } from './http/router.ts';
import { createLogger, type Logger } from './log.ts';
import { installSignals as installProcessSignals } from './signals.ts';
import type { ClientIdentity } from './net/identity.ts';
import { Listener } from './net/listener.ts';
import { UpstreamConnector } from './net/upstream-tls.ts';
import { VERSION } from './paths.ts';
import { UpstreamCluster } from './pool/upstream-cluster.ts';

export type { Phase, ReloadReport };

export { VERSION };
/** Client certificates remembered for /api/certificates and the expiry gauge; oldest evicted. */
const CLIENT_CERT_MEMORY = 256;

export interface ServerOptions {
  logger?: Logger;
  /** Log one line per request (default true). */
  logRequests?: boolean;
  /** Serve [admin] and keep metrics (default true when the config has [admin]). */
  admin?: boolean;
  /**
   * Keep the metrics registry even without serving [admin] (default: as `admin`). A worker of
   * several keeps its metrics for the primary, which serves the admin listener.
   */
  metrics?: boolean;
  /** Open [request_log] (default true). A worker of several sends its records to the primary instead. */
  requestLog?: boolean;
}

type Fn<A extends unknown[]> = (...args: A) => void;

export class ProxyServer implements ProxyView, ProxyEvents {
  readonly version = VERSION;
  readonly config: Config;
  readonly logger: Logger;
  #phase: Phase = 'starting';
  readonly #connectors = new Map<string, UpstreamConnector>();
  readonly #clusters = new Map<string, UpstreamCluster>();
  readonly #listeners: Listener[] = [];
  readonly #connections = new Set<DownstreamConnection>();
  readonly #observers: Array<(r: RequestRecord) => void> = [];
  readonly #tlsErrorObservers: Array<Fn<[string, string]>> = [];
  readonly #clientCertObservers: Array<Fn<[string, ClientIdentity]>> = [];
  readonly #connectObservers: Array<Fn<[string, string, number, boolean]>> = [];
  readonly #tunnelObservers: Array<Fn<[string, number, number]>> = [];
  /** sha256 -> the listener that saw it and its identity, insertion-ordered for eviction. */
  readonly #clientCerts = new Map<string, { listener: string; id: ClientIdentity }>();
  readonly #startedAt = Date.now();
  #stopping: Promise<void> | null = null;
  #metrics: Metrics | null = null;
  #requestLog: RequestLog | null = null;
  #admin: AdminServer | null = null;
  readonly #adminEnabled: boolean;
  readonly #metricsEnabled: boolean;
  readonly #requestLogEnabled: boolean;

  constructor(config: Config, opts: ServerOptions = {}) {
    this.config = config;
    this.#adminEnabled = opts.admin ?? config.admin !== null;
    this.#metricsEnabled = opts.metrics ?? this.#adminEnabled;
    this.#requestLogEnabled = opts.requestLog ?? true;
    this.logger = opts.logger ?? createLogger(config.log);
    if (opts.logRequests !== false) {
      const log = this.logger;
      this.#observers.push((r) => {
        if (r.error) log.warn({ req: r }, 'request');
        else log.info({ req: r }, 'request');
      });
    }
  }

  get phase(): Phase {
    return this.#phase;
  }

  get startedAt(): number {
    return this.#startedAt;
  }

  get clusters(): ReadonlyMap<string, UpstreamCluster> {
    return this.#clusters;
  }

  /** Subscribe to finished requests (request log, metrics). Called synchronously: don't block. */
  onRequest(fn: (r: RequestRecord) => void): void {
    this.#observers.push(fn);
  }

  onTlsError(fn: Fn<[string, string]>): void {
    this.#tlsErrorObservers.push(fn);
  }

  onClientCertificate(fn: Fn<[string, ClientIdentity]>): void {
    this.#clientCertObservers.push(fn);
  }

  onUpstreamConnect(fn: Fn<[string, string, number, boolean]>): void {
    this.#connectObservers.push(fn);
  }

  onTunnelEnd(fn: Fn<[string, number, number]>): void {
    this.#tunnelObservers.push(fn);
  }

  #publish<A extends unknown[]>(list: Array<Fn<A>>, ...args: A): void {
    for (let i = 0; i < list.length; i++) {
      try {
        list[i]!(...args);
      } catch (err) {
        this.logger.error({ err }, 'event observer failed');
      }
    }
  }

  #sawClientCertificate(listener: string, id: ClientIdentity): void {
    const known = this.#clientCerts.get(id.sha256);
    if (known !== undefined) {
      this.#clientCerts.delete(id.sha256); // re-insert: most recent last
    } else if (this.#clientCerts.size >= CLIENT_CERT_MEMORY) {
      this.#clientCerts.delete(this.#clientCerts.keys().next().value!);
    }
    this.#clientCerts.set(id.sha256, { listener, id });
    if (this.#clientCertObservers.length > 0) this.#publish(this.#clientCertObservers, listener, id);
  }

  #emit = (r: RequestRecord): void => {
    const obs = this.#observers;
    for (let i = 0; i < obs.length; i++) {
      try {
        obs[i]!(r);
      } catch (err) {
        this.logger.error({ err }, 'request observer failed');
      }
    }
  };

  async start(): Promise<void> {
    const cfg = this.config;
    // TLS: every file read and validated before anything listens (throws ConfigError)
    const modeOf = new Map<string, 'http' | 'tcp'>();
    for (const l of cfg.listeners) {
      modeOf.set(l.upstream, modeOf.get(l.upstream) ?? l.mode);
      for (const r of l.routes) modeOf.set(r.upstream, modeOf.get(r.upstream) ?? 'http');
    }
    for (const [name, up] of cfg.upstreams) {
      if (!modeOf.has(name)) continue;
      this.#connectors.set(name, new UpstreamConnector(up));
    }
    // pools, then health checks
    for (const [name, connector] of this.#connectors) {
      const cluster = new UpstreamCluster(cfg.upstreams.get(name)!, connector, modeOf.get(name) ?? 'http');
      cluster.balancer.onHealthChange = (ep, healthy) => this.logger.warn({ upstream: name, endpoint: ep.key, healthy, lastError: ep.lastError }, 'endpoint health changed');
      for (const pool of cluster.pools()) {
        const key = pool.endpoint.key;
        pool.onConnect = (seconds, ok) => {
          if (this.#connectObservers.length > 0) this.#publish(this.#connectObservers, name, key, seconds, ok);
        };
      }
      this.#clusters.set(name, cluster);
    }
    for (const c of this.#clusters.values()) c.start();
    try {
      // request log, then metrics and the admin listener (before the proxy listeners: the
      // first handshake error is counted and /readyz answers while they bind)
      if (cfg.requestLog !== null && this.#requestLogEnabled) {
        const { RequestLog } = await import('./admin/request-log.ts');
        this.#requestLog = RequestLog.open(cfg.requestLog, this.logger);
        this.#requestLog.attach(this);
        this.#requestLog.start();
      }
      if (this.#metricsEnabled) {
        const { Metrics } = await import('./admin/metrics.ts');
        const log = this.#requestLog;
        this.#metrics = new Metrics(this, this, log === null ? {} : { requestLogStats: () => log.stats });
      }
      if (this.#adminEnabled && cfg.admin !== null) {
        const { AdminServer } = await import('./admin/server.ts');
        this.#admin = new AdminServer({ config: cfg.admin, view: this, metrics: this.#metrics, requestLog: this.#requestLog, logger: this.logger });
        const a = await this.#admin.listen();
        this.logger.info({ admin: formatAddress(a) }, 'admin listening');
      }
      // listeners last
      for (const l of cfg.listeners) {
        const listener = await this.#createListener(l);
        this.#listeners.push(listener);
      }
    } catch (err) {
      await this.#teardown();
      throw err;
    }
    this.#phase = 'running';
    for (const l of this.#listeners) {
      this.logger.info({ listener: l.config.name, address: formatAddress(l.address()), mode: l.config.mode }, 'listening');
    }
  }

  async #createListener(cfg: ListenerConfig): Promise<Listener> {
    const cluster = this.#clusters.get(cfg.upstream)!;
    const ctx: ListenerContext = {
      config: cfg,
      router: new Router(cfg.routes, cfg.upstream),
      clusters: this.#clusters,
      logger: this.logger,
      onRequest: this.#emit,
      isDraining: () => this.#phase !== 'running',
    };
    const listener = await Listener.create(cfg, {
      logger: this.logger,
      onConnection: (socket: TLSSocket, identity: ClientIdentity | null, allowed: boolean) => {
        if (identity !== null) this.#sawClientCertificate(cfg.name, identity);
        const conn = new DownstreamConnection(socket, ctx, identity, allowed);
        this.#connections.add(conn);
        socket.once('close', () => this.#connections.delete(conn));
        if (this.#phase !== 'running') conn.drain();
      },
      tunnel: {
        selector: cluster.balancer,
        connector: this.#connectors.get(cfg.upstream)!,
        connectTimeoutMs: cluster.config.timeouts.connectMs,
        onEnd: (s) => {
          if (s.identity !== null) this.#sawClientCertificate(cfg.name, s.identity);
          if (this.#tunnelObservers.length > 0) this.#publish(this.#tunnelObservers, cfg.name, s.bytesIn, s.bytesOut);
          this.logger.info({ listener: cfg.name, endpoint: s.endpoint, client: s.identity?.subject ?? null, bytesIn: s.bytesIn, bytesOut: s.bytesOut, durationMs: s.durationMs, error: s.error }, 'tunnel closed');
        },
      },
      onTlsError: (reason: string) => {
        if (this.#tlsErrorObservers.length > 0) this.#publish(this.#tlsErrorObservers, cfg.name, reason);
      },
    });
    return listener;
  }

  /** SIGHUP / POST /api/reload: re-read every certificate; a bad file keeps the old one. */
  async reload(): Promise<ReloadReport> {
    const report: ReloadReport = { changed: [], unchanged: [], errors: [] };
    const jobs: Array<[string, Promise<{ changed: boolean; error?: string }>]> = [];
    for (const l of this.#listeners) jobs.push([`listeners.${l.config.name}.tls`, l.reload()]);
    for (const [name, c] of this.#connectors) jobs.push([`upstreams.${name}.tls`, c.reload()]);
    for (const [what, job] of jobs) {
      const r = await job;
      if (r.error) report.errors.push({ what, error: r.error });
      else if (r.changed) report.changed.push(what);
      else report.unchanged.push(what);
    }
    for (const e of report.errors) this.logger.error({ what: e.what, error: e.error }, 'reload refused: keeping the previous certificates');
    this.logger.info({ changed: report.changed, unchanged: report.unchanged.length }, 'certificates reloaded');
    return report;
  }

  /**
   * SIGTERM: stop accepting, let in-flight requests finish (late keep-alive requests get
   * Connection: close), then close what is left after drain_timeout and stop.
   */
  shutdown(): Promise<void> {
    this.#stopping ??= this.#shutdown();
    return this.#stopping;
  }

  async #shutdown(): Promise<void> {
    if (this.#phase === 'stopped') return;
    this.#phase = 'draining';
    this.logger.info({ inFlight: this.#connections.size, drainTimeoutMs: this.config.server.drainTimeoutMs }, 'draining');
    const closing = this.#listeners.map((l) => l.close());
    for (const c of this.#connections) c.drain();
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(resolve, this.config.server.drainTimeoutMs, 'timeout').unref());
    const result = await Promise.race([Promise.all(closing).then(() => 'done' as const), timeout]);
    if (result === 'timeout') {
      this.logger.warn({ left: this.#connections.size }, 'drain timeout: closing remaining connections');
      for (const l of this.#listeners) l.destroy();
    }
    await this.#teardown();
    this.#phase = 'stopped';
    this.logger.info('stopped');
  }

  async #teardown(): Promise<void> {
    for (const l of this.#listeners) l.destroy();
    // the admin listener stays up through draining (/readyz says 503), then goes
    if (this.#admin) await this.#admin.close();
    this.#metrics?.close();
    await this.#requestLog?.close();
    await Promise.all([...this.#clusters.values()].map((c) => c.close()));
  }

  /** The admin listener's bound address, or null when there is none. */
  adminAddress(): AddressInfo | null {
    return this.#admin ? this.#admin.address() : null;
  }

  get requestLog(): RequestLog | null {
    return this.#requestLog;
  }

  get metrics(): Metrics | null {
    return this.#metrics;
  }

  // ---- ProxyView ------------------------------------------------------------------------

  listeners(): ListenerView[] {
    return this.#listeners.map((l) => ({
      name: l.config.name,
      mode: l.config.mode,
      address: l.listening ? formatAddress(l.address()) : '',
      upstream: l.config.upstream,
      stats: l.stats,
    }));
  }

  upstreams(): UpstreamView[] {
    return [...this.#clusters.values()].map((c) => ({ name: c.name, endpoints: c.report() }));
  }

  certificates(): CertificateView[] {
    const out: CertificateView[] = [];
    const add = (role: CertificateRole, owner: string, certs: readonly X509Certificate[], leafOnly: boolean): void => {
      for (const c of leafOnly ? certs.slice(0, 1) : certs) {
        const d = describeCertificate(c.toString());
        out.push({ role, owner, subject: d.subject, sans: d.sans, issuer: d.issuer, notAfter: d.notAfter, daysLeft: d.daysLeft, sha256: d.sha256 });
      }
    };
    for (const l of this.#listeners) {
      const certs = l.tls.certificates;
      add('listener', l.config.name, certs.server, true);
      add('client-ca', l.config.name, certs.clientCa, false);
    }
    for (const [name, c] of this.#connectors) {
      add('upstream-client', name, c.certificates.client, true);
      add('upstream-ca', name, c.certificates.ca, false);
    }
    const now = Date.now();
    for (const { listener, id } of this.#clientCerts.values()) {
      out.push({
        role: 'client', owner: listener, subject: id.subject,
        sans: [...id.dns.map((d) => `DNS:${d}`), ...id.uris.map((u) => `URI:${u}`)],
        issuer: '', notAfter: id.notAfter, daysLeft: Math.floor((id.notAfter.getTime() - now) / 86_400_000), sha256: id.sha256,
      });
    }
    return out;
  }

  readiness(): Readiness {
    const reasons: string[] = [];
    if (this.#phase !== 'running') reasons.push(this.#phase);
    for (const l of this.#listeners) if (!l.listening) reasons.push(`listener ${l.config.name}: not bound`);
    for (const c of this.#clusters.values()) if (!c.balancer.anyHealthy) reasons.push(`upstream ${c.name}: no healthy endpoint`);
    return { ready: reasons.length === 0, reasons };
  }

  listenerAddress(name: string): AddressInfo {
    const l = this.#listeners.find((x) => x.config.name === name);
    if (!l) throw new Error(`no listener named ${name}`);
    return l.address();
  }

  get openConnections(): number {
    return this.#listeners.reduce((n, l) => n + l.stats.open, 0);
  }
}

export function formatAddress(a: AddressInfo): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** `mtls-proxy start`: run until a signal says stop. */
export async function runServer(config: Config, opts: ServerOptions = {}): Promise<ProxyServer> {
  const server = new ProxyServer(config, opts);
  await server.start();
  installSignals(server);
  return server;
}

/** SIGTERM/SIGINT drain and exit, SIGHUP reloads (src/signals.ts). */
export function installSignals(server: ProxyServer): void {
  installProcessSignals(server);
}
