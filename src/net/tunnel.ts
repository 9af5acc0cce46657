// L4 mode (a ghostunnel-style tunnel): bytes from an accepted client TLS socket go to an
// upstream over a new mTLS connection and back, the way the HTTP path moves bodies: reads land
// in shared buffers (the client's in client-reads.ts's, the upstream's in one buffer every
// tunnel reads into, Node's `onread`), so a read costs no Buffer, and every write goes through
// a SocketWriter (socket-writer.ts), which hands TLS what arrives while a write is in flight as
// one buffer. Flow control is the writers': write() === false pauses the other side until that
// writer's onDrain, so at most WRITE_LIMIT (1 MiB) plus a write in flight sits in memory per
// direction, whatever the speed difference (Envoy's per-connection buffer limits do the same
// job). Handlers are created once per tunnel, never per chunk.
import type { TLSSocket } from 'node:tls';
import type { EndpointSelector, EndpointState, ReadInto, TlsConnector } from '../pool/types.ts';
import { isProxyError, ProxyError } from '../errors.ts';
import { readIntoShared } from './client-reads.ts';
import type { ClientIdentity } from './identity.ts';
import { SocketWriter } from './socket-writer.ts';

export interface TunnelOptions {
  selector: EndpointSelector;
  connector: TlsConnector;
  connectTimeoutMs: number;
  /** No bytes in either direction for this long destroys both sides (limits.idle_timeout). */
  idleTimeoutMs: number;
  /** Called once, after both sockets emitted 'close'. */
  onEnd?: (summary: TunnelSummary) => void;
}

export interface TunnelSummary {
  identity: ClientIdentity | null;
  /** "host:port" of the endpoint used, or null if none was reached. */
  endpoint: string | null;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  /** Why the tunnel ended abnormally (a ProxyError code or a socket error code), or null. */
  error: string | null;
}

// One retry on another endpoint, as ghostunnel/HAProxy "redispatch" do: the first failure
// already marked that endpoint unhealthy, so pick() moves on.
const CONNECT_ATTEMPTS = 2;

/** Node's TLS layer hands out at most 16 KiB of cleartext per read (one TLS record). */
const READ_BYTES = 16 * 1024;
/**
 * The buffer every tunnel's upstream socket reads into. One is enough: a read's callback runs
 * to its end before the next read of any socket is copied in, and the callback keeps nothing
 * of it (the writer takes it into TLS or copies it; bytes before the tunnel is attached are copied).
 */
let upstreamReadBuffer: Buffer | null = null;

export class Tunnel {
  readonly #client: TLSSocket;
  readonly #identity: ClientIdentity | null;
  readonly #opts: TunnelOptions;
  readonly #started = Date.now();
  #upstream: TLSSocket | null = null;
  #upstreamWriter: SocketWriter | null = null;
  readonly #clientWriter: SocketWriter;
  /** Upstream bytes that came before the tunnel was attached (a server that speaks first), as copies. */
  #early: Buffer[] | null = null;
  readonly #upstreamReads: ReadInto;
  #endpoint: string | null = null;
  #bytesIn = 0;
  #bytesOut = 0;
  #error: Error | null = null;
  #timer: NodeJS.Timeout | null = null;
  #destroyed = false;
  #ended = false;

  constructor(client: TLSSocket, identity: ClientIdentity | null, opts: TunnelOptions) {
    this.#client = client;
    this.#identity = identity;
    this.#opts = opts;
    this.#clientWriter = new SocketWriter(client, this.#onClientDrain);
    this.#upstreamReads = { buffer: (upstreamReadBuffer ??= Buffer.allocUnsafeSlow(READ_BYTES)), callback: this.#onUpstreamRead };
    client.on('error', this.#onClientError);
    client.once('close', this.#onClientClose);
  }

  /** Bytes received from the client (and sent upstream). */
  get bytesIn(): number {
    return this.#bytesIn;
  }

  /** Bytes received from the upstream (and sent to the client). */
  get bytesOut(): number {
    return this.#bytesOut;
  }

  get endpoint(): string | null {
    return this.#endpoint;
  }

  /** Picks an endpoint, connects, then relays until both directions ended. */
  async start(): Promise<void> {
    const { selector, connector, connectTimeoutMs } = this.#opts;
    let failure: Error = new ProxyError('NO_HEALTHY_ENDPOINT', 'no healthy endpoint for the tunnel');
    for (let attempt = 0; attempt < CONNECT_ATTEMPTS && !this.#destroyed; attempt++) {
      const endpoint: EndpointState | null = selector.pick();
      if (endpoint === null) break;
      let upstream: TLSSocket;
      try {
        upstream = await connector.connect(endpoint.address, connectTimeoutMs, this.#upstreamReads);
      } catch (err) {
        failure = err instanceof Error ? err : new ProxyError('UPSTREAM_CONNECT', String(err));
        selector.reportFailure(endpoint, isProxyError(err) ? err.code : 'MTLS_ERR_UPSTREAM_CONNECT');
        continue;
      }
      selector.reportSuccess(endpoint);
      if (this.#destroyed) {
        upstream.destroy(); // the client went away while we were connecting
        return;
      }
      this.#endpoint = endpoint.key;
      this.#attach(upstream);
      return;
    }
    this.destroy(failure);
  }

  #attach(upstream: TLSSocket): void {
    this.#upstream = upstream;
    this.#upstreamWriter = new SocketWriter(upstream, this.#onUpstreamDrain);
    const client = this.#client;
    upstream.on('error', this.#onUpstreamError);
    upstream.once('close', this.#onUpstreamClose);
    upstream.on('end', this.#onUpstreamEnd);
    // bytes the client socket took in before now come as 'data' (Buffers of their own), the
    // rest through the shared read buffer (#onClientRead)
    client.on('data', this.#onClientData);
    client.on('end', this.#onClientEnd);
    readIntoShared(client, this.#onClientRead);
    this.#timer = setTimeout(this.#onIdle, this.#opts.idleTimeoutMs);
    this.#timer.unref();
    const early = this.#early;
    this.#early = null;
    if (early !== null) for (const b of early) this.#onUpstreamData(b);
  }

  // Arrow-function fields: bound once per tunnel, so the hot path allocates nothing.
  readonly #onClientRead = (nread: number, buffer: Buffer): boolean => {
    const c = this.#client;
    // behind bytes still queued in the socket (taken in before the shared buffer): a copy, in order
    if (c.readableLength > 0) c.push(Buffer.copyBytesFrom(buffer, 0, nread));
    else this.#onClientData(buffer.subarray(0, nread));
    return true;
  };

  readonly #onClientData = (chunk: Buffer): void => {
    this.#bytesIn += chunk.length;
    this.#timer?.refresh();
    if (!this.#upstreamWriter!.write(chunk)) this.#client.pause();
  };

  readonly #onUpstreamRead = (nread: number, buffer: Buffer): boolean => {
    if (this.#upstreamWriter === null) {
      // not attached yet (connect() has not returned): kept as a copy for #attach
      (this.#early ??= []).push(Buffer.copyBytesFrom(buffer, 0, nread));
      return true;
    }
    this.#onUpstreamData(buffer.subarray(0, nread));
    return true;
  };

  readonly #onUpstreamData = (chunk: Buffer): void => {
    this.#bytesOut += chunk.length;
    this.#timer?.refresh();
    if (!this.#clientWriter.write(chunk)) (this.#upstream as TLSSocket).pause();
  };

  readonly #onUpstreamDrain = (): void => { this.#client.resume(); };
  readonly #onClientDrain = (): void => { this.#upstream?.resume(); };

  // Half-close is forwarded: end() sends close_notify + FIN after what the writer still holds
  // and the socket's queue. With allowHalfOpen on both sockets the other direction keeps
  // flowing (RFC 8446 §6.1).
  readonly #onClientEnd = (): void => {
    this.#upstreamWriter?.settle();
    this.#upstream?.end();
  };

  readonly #onUpstreamEnd = (): void => {
    this.#clientWriter.settle();
    this.#client.end();
  };

  readonly #onIdle = (): void => {
    this.destroy(new ProxyError('CLIENT_TIMEOUT', `tunnel idle for ${this.#opts.idleTimeoutMs}ms`));
  };

  readonly #onClientError = (err: Error): void => { this.#error ??= err; };
  readonly #onUpstreamError = (err: Error): void => { this.#error ??= err; };

  // a closed socket's writer gives its buffer back (what it still held cannot go out any more)
  readonly #onClientClose = (): void => {
    this.#clientWriter.drop();
    this.#sideClosed(this.#client, this.#upstream);
  };

  readonly #onUpstreamClose = (): void => {
    this.#upstreamWriter?.drop();
    this.#sideClosed(this.#upstream as TLSSocket, this.#client);
  };

  // 'close' tears down. A side that closed after both of its directions finished leaves the
  // other to finish its own shutdown; anything else (error, reset, destroy) takes the other
  // side down at once, so a half-dead tunnel never waits for the idle timer.
  #sideClosed(side: TLSSocket, other: TLSSocket | null): void {
    const clean = this.#error === null && side.readableEnded && side.writableFinished;
    if (other !== null && !clean) other.destroy();
    const upstream = this.#upstream;
    if (this.#ended || !this.#client.closed || (upstream !== null && !upstream.closed)) return;
    this.#ended = true;
    this.#destroyed = true; // a connect still in flight drops its socket when it lands
    if (this.#timer !== null) clearTimeout(this.#timer);
    const err = this.#error;
    this.#opts.onEnd?.({
      identity: this.#identity,
      endpoint: this.#endpoint,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      durationMs: Date.now() - this.#started,
      error: err === null ? null : ((err as NodeJS.ErrnoException).code ?? err.message),
    });
  }

  /**
   * Graceful: a byte stream has no message boundary to wait for, so this only half-closes
   * toward the client and upstream and lets them finish; the server's drain timeout then
   * calls destroy(). Idempotent.
   */
  close(): void {
    if (this.#destroyed) return;
    this.#clientWriter.settle();
    this.#client.end();
    this.#upstreamWriter?.settle();
    this.#upstream?.end();
  }

  /** Now: both sockets destroyed; `err` is reported as the tunnel's error. Idempotent. */
  destroy(err?: Error): void {
    if (err !== undefined) this.#error ??= err;
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#clientWriter.drop();
    this.#upstreamWriter?.drop();
    this.#client.destroy();
    this.#upstream?.destroy();
  }
}
