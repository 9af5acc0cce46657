// One generic-pool per endpoint of upstream TLS connections. Connect failures come back as
// data (a connection object carrying `failure`) rather than as a rejected create():
// generic-pool re-runs a failing create() in a loop while anyone waits, which would hammer
// a dead upstream and keep the waiter hanging until its acquire timeout.
//
// generic-pool creates, counts (max_connections), queues waiters for (max_pending), and
// destroys every connection. In front of it sits a ready list: a connection released while
// nobody waits stays borrowed from generic-pool and goes on the list, and the next request
// takes it synchronously (tryAcquire), with no promise. Under keep-alive load that is nearly
// every request; generic-pool's promise-based acquire and release cost ~10% of the proxy's
// CPU per small request (bench/tools/ab-builds.sh). Releases go to generic-pool whenever a
// borrower waits there, so the list never starves its queue, and a sweep ends a listed
// connection's life after idle_timeout as generic-pool's eviction would.
import genericPool, { type Pool } from 'generic-pool';
import type { PoolConfig, UpstreamTimeouts } from '../config/types.ts';
import { ProxyError, isProxyError } from '../errors.ts';
import type { Endpoint } from './balancer.ts';
import { UpstreamConnection, UpstreamReads } from './connection.ts';
import type { TlsConnector } from './types.ts';

export interface PoolStats {
  size: number;
  idle: number;
  busy: number;
  pending: number;
}

function asProxyError(err: unknown): ProxyError {
  if (isProxyError(err)) return err;
  return new ProxyError('UPSTREAM_CONNECT', err instanceof Error ? err.message : String(err), { cause: err });
}

export class EndpointPool {
  readonly endpoint: Endpoint;
  readonly #pool: Pool<UpstreamConnection>;
  readonly #connector: TlsConnector;
  readonly #connectMs: number;
  #closed = false;
  /**
   * Released connections still borrowed from generic-pool, newest last: tryAcquire takes the
   * most recently used one, so the least used age out (see #sweep).
   */
  readonly #ready: UpstreamConnection[] = [];
  readonly #idleTimeoutMs: number;
  readonly #sweeper: NodeJS.Timeout;
  /** Connect durations in seconds, for the upstream_connect_duration metric. */
  onConnect: ((seconds: number, ok: boolean) => void) | null = null;

  constructor(endpoint: Endpoint, connector: TlsConnector, pool: PoolConfig, timeouts: UpstreamTimeouts) {
    this.endpoint = endpoint;
    this.#connector = connector;
    this.#connectMs = timeouts.connectMs;
    this.#idleTimeoutMs = pool.idleTimeoutMs;
    const evictionMs = Math.max(250, Math.min(pool.idleTimeoutMs / 2, 5000));
    this.#sweeper = setInterval(() => this.#sweep(), evictionMs);
    this.#sweeper.unref();
    this.#pool = genericPool.createPool<UpstreamConnection>(
      {
        create: () => this.#connect(),
        destroy: async (conn) => {
          conn.destroy();
        },
      },
      {
        max: pool.maxConnections,
        min: 0,
        // generic-pool counts a borrower waiting for a connection being created as waiting too;
        // max_pending bounds the queue beyond max_connections, so both are allowed for.
        maxWaitingClients: pool.maxPending + pool.maxConnections,
        // no acquireTimeoutMillis: generic-pool would arm a timer for every acquire, idle
        // connection or not. #borrow times only the acquires that have to wait.
        idleTimeoutMillis: pool.idleTimeoutMs,
        evictionRunIntervalMillis: evictionMs,
        numTestsPerEvictionRun: 64,
        autostart: true,
      },
    );
  }

  async #connect(): Promise<UpstreamConnection> {
    const t0 = performance.now();
    try {
      const reads = new UpstreamReads();
      const socket = await this.#connector.connect(this.endpoint.address, this.#connectMs, reads);
      this.onConnect?.((performance.now() - t0) / 1000, true);
      return new UpstreamConnection(socket, null, reads);
    } catch (err) {
      this.onConnect?.((performance.now() - t0) / 1000, false);
      return new UpstreamConnection(null, asProxyError(err), null);
    }
  }

  /** An idle connection from the ready list, now, or null: then acquire(). */
  tryAcquire(): UpstreamConnection | null {
    const ready = this.#ready;
    while (ready.length > 0) {
      const conn = ready.pop()!;
      if (conn.usable) return conn;
      // closed or spoke while idle
      void this.#pool.destroy(conn).catch(() => {});
    }
    return null;
  }

  /** A usable connection, reused when one is idle. Throws a ProxyError (connect failure: 502, queue full or wait too long: 503). */
  async acquire(): Promise<UpstreamConnection> {
    if (this.#closed) throw new ProxyError('DRAINING', 'upstream pool is closed');
    const ready = this.tryAcquire();
    if (ready !== null) return ready;
    for (;;) {
      let conn: UpstreamConnection;
      try {
        conn = await this.#borrow();
      } catch (err) {
        throw isProxyError(err) ? err : this.#acquireError(err);
      }
      if (conn.failure) {
        await this.#pool.destroy(conn);
        throw conn.failure;
      }
      if (conn.usable) return conn;
      // closed or spoke while idle: drop it and borrow again (a fresh one if none is left)
      await this.#pool.destroy(conn);
    }
  }

  /**
   * generic-pool's acquire, timed by timeouts.connect only when it has to wait. An idle
   * connection with nobody queued before us is handed over at once, with no timer: the common
   * case under keep-alive load, where a timer per acquire cost 8% of the proxy's CPU per small
   * request (bench/tools/ab-builds.sh, generic-pool's acquireTimeoutMillis on and off).
   * A waiter that gives up stays in generic-pool's queue (it cannot be taken out); whatever
   * it is handed later goes straight back, and until then it counts toward max_pending.
   */
  #borrow(): Promise<UpstreamConnection> {
    const pool = this.#pool;
    if (pool.available > 0 && pool.pending === 0) return pool.acquire();
    return new Promise<UpstreamConnection>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new ProxyError('POOL_ACQUIRE_TIMEOUT', `no connection to ${this.endpoint.key} became free in ${this.#connectMs} ms`));
      }, this.#connectMs);
      pool.acquire().then(
        (conn) => {
          if (settled) {
            this.#handBack(conn);
            return;
          }
          settled = true;
          clearTimeout(timer);
          resolve(conn);
        },
        (err: unknown) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          reject(this.#acquireError(err));
        },
      );
    });
  }

  #acquireError(err: unknown): ProxyError {
    const msg = err instanceof Error ? err.message : String(err);
    if (/max waitingClients/i.test(msg)) return new ProxyError('POOL_QUEUE_FULL', `pool queue for ${this.endpoint.key} is full`, { cause: err });
    return new ProxyError('POOL_ACQUIRE_TIMEOUT', `no connection to ${this.endpoint.key}: ${msg}`, { cause: err });
  }

  /** A connection handed to a waiter that had already given up. */
  #handBack(conn: UpstreamConnection): void {
    if (this.#closed || conn.failure || !conn.usable) void this.#pool.destroy(conn).catch(() => {});
    else void this.#pool.release(conn).catch(() => {});
  }

  /** A new connection outside the pool, for the one retry after a keep-alive race. */
  async connectFresh(): Promise<UpstreamConnection> {
    const conn = await this.#connect();
    if (conn.failure) throw conn.failure;
    conn.pooled = false;
    return conn;
  }

  /** After a complete exchange with keep-alive on both ends. */
  release(conn: UpstreamConnection): void {
    conn.unbind();
    conn.uses++;
    if (!conn.pooled) {
      conn.destroy();
      return;
    }
    if (this.#closed || !conn.usable) {
      void this.#pool.destroy(conn).catch(() => {});
      return;
    }
    if (this.#pool.pending > 0) {
      void this.#pool.release(conn).catch(() => {});
      return;
    }
    conn.idleSince = performance.now();
    this.#ready.push(conn);
  }

  /** Ends listed connections idle for idle_timeout or more, and dead ones. */
  #sweep(): void {
    const ready = this.#ready;
    if (ready.length === 0) return;
    const cutoff = performance.now() - this.#idleTimeoutMs;
    let kept = 0;
    for (const conn of ready) {
      if (conn.usable && conn.idleSince > cutoff) ready[kept++] = conn;
      else void this.#pool.destroy(conn).catch(() => {});
    }
    ready.length = kept;
  }

  /** After anything else: errors, incomplete exchanges, Connection: close. */
  destroy(conn: UpstreamConnection): void {
    conn.unbind();
    if (!conn.pooled) {
      conn.destroy();
      return;
    }
    void this.#pool.destroy(conn).catch(() => {});
  }

  stats(): PoolStats {
    const p = this.#pool;
    const listed = this.#ready.length;
    return { size: p.size, idle: p.available + listed, busy: p.borrowed - listed, pending: p.pending };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const conn of this.#ready.splice(0)) void this.#pool.destroy(conn).catch(() => {});
    await this.#pool.drain();
    await this.#pool.clear();
  }
}
