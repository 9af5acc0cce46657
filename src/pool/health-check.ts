// Active health checks: on every interval, an HTTP GET of `path` on a connection of its own
// (never a pooled one, so a check can't take a slot from traffic or reuse a stale socket).
// For tcp-mode upstreams the check is the TLS handshake alone. 2xx is a success; thresholds
// of consecutive results flip the endpoint (Envoy's healthy/unhealthy_threshold).
import type { TLSSocket } from 'node:tls';
import type { HealthCheckConfig } from '../config/types.ts';
import type { Balancer, Endpoint } from './balancer.ts';
import type { TlsConnector } from './types.ts';

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})/;

interface Counters {
  ok: number;
  fail: number;
  running: boolean;
}

export class HealthChecker {
  readonly #cfg: HealthCheckConfig;
  readonly #balancer: Balancer;
  readonly #connector: TlsConnector;
  readonly #hostHeader: string;
  readonly #httpMode: boolean;
  readonly #state = new Map<Endpoint, Counters>();
  #timer: NodeJS.Timeout | null = null;
  #open = new Set<TLSSocket>();

  constructor(cfg: HealthCheckConfig, balancer: Balancer, connector: TlsConnector, hostHeader: string, httpMode: boolean) {
    this.#cfg = cfg;
    this.#balancer = balancer;
    this.#connector = connector;
    this.#hostHeader = hostHeader;
    this.#httpMode = httpMode;
    for (const ep of balancer.endpoints) this.#state.set(ep, { ok: 0, fail: 0, running: false });
  }

  start(): void {
    if (this.#timer) return;
    this.runOnce();
    this.#timer = setInterval(() => this.runOnce(), this.#cfg.intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    for (const s of this.#open) s.destroy();
    this.#open.clear();
  }

  /** One round over all endpoints; resolves when every check finished. */
  runOnce(): Promise<void> {
    const all: Promise<void>[] = [];
    for (const [ep, st] of this.#state) {
      if (st.running) continue;
      st.running = true;
      all.push(
        this.#check(ep).then((ok) => {
          st.running = false;
          this.#record(ep, st, ok);
        }),
      );
    }
    return Promise.all(all).then(() => undefined);
  }

  #record(ep: Endpoint, st: Counters, ok: boolean): void {
    if (ok) {
      st.ok++;
      st.fail = 0;
      if (!ep.activeHealthy && st.ok >= this.#cfg.healthyThreshold) this.#balancer.setActiveHealth(ep, true);
    } else {
      st.fail++;
      st.ok = 0;
      if (ep.activeHealthy && st.fail >= this.#cfg.unhealthyThreshold) this.#balancer.setActiveHealth(ep, false);
    }
  }

  async #check(ep: Endpoint): Promise<boolean> {
    const { timeoutMs } = this.#cfg;
    let socket: TLSSocket;
    try {
      socket = await this.#connector.connect(ep.address, timeoutMs);
    } catch (err) {
      ep.lastError = (err as { code?: string }).code ?? 'MTLS_ERR_UPSTREAM_CONNECT';
      return false;
    }
    if (!this.#httpMode) {
      socket.destroy();
      return true;
    }
    this.#open.add(socket);
    return new Promise<boolean>((resolve) => {
      let head = '';
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        this.#open.delete(socket);
        socket.destroy();
        if (!ok) ep.lastError ??= 'MTLS_ERR_HEALTH_CHECK';
        resolve(ok);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      timer.unref();
      socket.on('data', (d: Buffer) => {
        head += d.toString('latin1');
        const m = STATUS_LINE.exec(head);
        if (m) done(Number(m[1]) >= 200 && Number(m[1]) < 300);
        else if (head.length > 64 || head.includes('\n')) done(false);
      });
      socket.on('error', () => done(false));
      socket.on('close', () => done(false));
      socket.write(`GET ${this.#cfg.path} HTTP/1.1\r\nHost: ${this.#hostHeader}\r\nUser-Agent: mtls-proxy-health-check\r\nConnection: close\r\n\r\n`);
    });
  }
}
