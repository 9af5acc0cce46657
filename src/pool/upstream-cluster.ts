// An upstream: its endpoints (balancer), one pool per endpoint, and optional active health
// checks. The HTTP layer asks it for a connection; connect failures are retried on another
// endpoint once (nothing was sent, so any method may go again), and mark the endpoint
// unhealthy for the back-off.
import type { UpstreamConfig } from '../config/types.ts';
import type { ProxyError } from '../errors.ts';
import { Balancer, type Endpoint } from './balancer.ts';
import type { UpstreamConnection } from './connection.ts';
import { EndpointPool, type PoolStats } from './endpoint-pool.ts';
import { HealthChecker } from './health-check.ts';
import type { TlsConnector } from './types.ts';

export interface Lease {
  conn: UpstreamConnection;
  pool: EndpointPool;
}

export interface EndpointReport extends PoolStats {
  endpoint: string;
  healthy: boolean;
  lastError: string | null;
}

export class UpstreamCluster {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly balancer: Balancer;
  readonly connector: TlsConnector;
  readonly #pools = new Map<Endpoint, EndpointPool>();
  readonly #health: HealthChecker | null;

  constructor(config: UpstreamConfig, connector: TlsConnector, mode: 'http' | 'tcp' = 'http') {
    this.name = config.name;
    this.config = config;
    this.connector = connector;
    this.balancer = new Balancer(config.name, config.endpoints, config.failureBackoffMs);
    for (const ep of this.balancer.endpoints) {
      this.#pools.set(ep, new EndpointPool(ep, connector, config.pool, config.timeouts));
    }
    const first = config.endpoints[0];
    const host = config.tls.serverName ?? (first ? first.host : 'localhost');
    this.#health = config.healthCheck ? new HealthChecker(config.healthCheck, this.balancer, connector, host, mode === 'http') : null;
  }

  start(): void {
    this.#health?.start();
  }

  pools(): IterableIterator<EndpointPool> {
    return this.#pools.values();
  }

  /** The endpoint for the next request: round-robin over the healthy ones (the balancer). */
  pick(): Endpoint | null {
    return this.balancer.pick(null);
  }

  /** An idle connection to `ep` now, without waiting, or null: then acquire(ep). */
  tryAcquire(ep: Endpoint): Lease | null {
    const pool = this.#pools.get(ep)!;
    const conn = pool.tryAcquire();
    if (conn === null) return null;
    this.balancer.reportSuccess(ep);
    return { conn, pool };
  }

  /**
   * A connection from a healthy endpoint's pool (`first`: the endpoint the caller already
   * picked); one retry on another endpoint if connecting fails.
   */
  async acquire(first?: Endpoint | null): Promise<Lease> {
    let tried: Endpoint | null = null;
    let lastErr: ProxyError | null = null;
    for (let attempt = 0; attempt < 2; attempt++) {
      const ep: Endpoint | null = attempt === 0 && first !== undefined ? first : this.balancer.pick(tried);
      if (!ep || ep === tried) break;
      const pool = this.#pools.get(ep)!;
      try {
        const conn = await pool.acquire();
        this.balancer.reportSuccess(ep);
        return { conn, pool };
      } catch (err) {
        lastErr = err as ProxyError;
        if (lastErr.kind !== 'UPSTREAM_CONNECT' && lastErr.kind !== 'UPSTREAM_TLS') throw lastErr;
        this.balancer.reportFailure(ep, lastErr.code);
        tried = ep;
      }
    }
    throw lastErr!;
  }

  report(): EndpointReport[] {
    return this.balancer.endpoints.map((ep) => ({
      endpoint: ep.key,
      healthy: ep.healthy,
      lastError: ep.lastError,
      ...this.#pools.get(ep)!.stats(),
    }));
  }

  async close(): Promise<void> {
    this.#health?.stop();
    await Promise.all([...this.#pools.values()].map((p) => p.close()));
  }
}
