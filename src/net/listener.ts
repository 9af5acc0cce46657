// One configured listener: accept + TLS handshake + identity check, the first phases of the
// pipeline. HTTP mode hands every connection to the HTTP layer with its identity and the
// allow-list verdict (it answers 403); TCP mode refuses not-allowed clients itself and runs a
// tunnel for the rest.
import cluster from 'node:cluster';
import { type TlsOptions, createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo, Socket } from 'node:net';
import type { ListenerConfig } from '../config/types.ts';
import { ConfigError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import type { EndpointSelector, TlsConnector } from '../pool/types.ts';
import { compileAllowList, identityFromSocket, type AllowList, type ClientIdentity } from './identity.ts';
import { ListenerTls, type ReloadResult } from './tls-context.ts';
import { Tunnel, type TunnelSummary } from './tunnel.ts';

/**
 * HTTP mode: called once per established connection, synchronously after the handshake.
 * The socket allows half-open (a client's FIN does not end our side), so the handler decides
 * when to end() it; it must attach its own 'error' listener.
 */
export type ConnectionHandler = (socket: TLSSocket, identity: ClientIdentity | null, allowed: boolean) => void;

/** TCP mode: where tunnels go. */
export interface TunnelTarget {
  selector: EndpointSelector;
  connector: TlsConnector;
  connectTimeoutMs: number;
  /** Default: the listener's limits.idle_timeout. */
  idleTimeoutMs?: number;
  /** A tunnel ended (bytes, endpoint, error): for metrics and the log. */
  onEnd?: (summary: TunnelSummary) => void;
}

export interface ListenerOptions {
  /** Loaded from config.tls when absent (Listener.create). */
  tls: ListenerTls;
  /** Required in http mode, ignored in tcp mode. */
  onConnection?: ConnectionHandler;
  /** Required in tcp mode, ignored in http mode. */
  tunnel?: TunnelTarget;
  /** A handshake failed, or a connection was refused right after it; `reason` is short (a metric label). */
  onTlsError?: (reason: string, err: Error | null) => void;
  logger?: Logger;
}

export interface ListenerStats {
  /** Established (post-handshake) connections now open. */
  open: number;
  accepted: number;
  /** Connections refused after the handshake (allow-list in tcp mode, bad optional certificate). */
  refused: number;
  tlsErrors: ReadonlyMap<string, number>;
  /** TCP mode totals over ended tunnels. */
  bytesIn: number;
  bytesOut: number;
}

// Node's codes for the usual handshake failures, as metric-label-friendly reasons. Anything
// else is derived from the code, which comes from a finite set (OpenSSL reasons, errnos).
const TLS_REASONS: ReadonlyMap<string, string> = new Map([
  ['ERR_TLS_HANDSHAKE_TIMEOUT', 'handshake_timeout'],
  ['ECONNRESET', 'connection_reset'],
  ['ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', 'no_client_certificate'],
  ['ERR_SSL_CERTIFICATE_VERIFY_FAILED', 'certificate_verify_failed'],
  ['ERR_SSL_HTTP_REQUEST', 'plain_http'],
  ['ERR_SSL_WRONG_VERSION_NUMBER', 'wrong_version_number'],
  ['ERR_SSL_UNSUPPORTED_PROTOCOL', 'unsupported_protocol'],
  ['ERR_SSL_NO_SHARED_CIPHER', 'no_shared_cipher'],
]);

export function tlsErrorReason(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const known = TLS_REASONS.get(code);
  if (known !== undefined) return known;
  const bare = code.startsWith('ERR_SSL_') ? code.slice(8) : code;
  return /^[A-Z0-9_]{1,64}$/.test(bare) ? bare.toLowerCase() : 'other';
}

export class Listener {
  readonly #cfg: ListenerConfig;
  readonly #tls: ListenerTls;
  readonly #server: Server;
  readonly #allow: AllowList;
  readonly #allowWithoutCert: boolean;
  readonly #onConnection: ConnectionHandler | null;
  readonly #tunnel: TunnelTarget | null;
  readonly #onTlsError: ((reason: string, err: Error | null) => void) | null;
  readonly #log: Logger;
  /** Every accepted TCP socket, handshaking or not: destroying it ends the TLS socket too. */
  readonly #raw = new Set<Socket>();
  readonly #secure = new Set<TLSSocket>();
  readonly #tunnels = new Set<Tunnel>();
  readonly #tlsErrors = new Map<string, number>();
  #accepted = 0;
  #refused = 0;
  #bytesIn = 0;
  #bytesOut = 0;
  #closing: Promise<void> | null = null;
  #drained: (() => void) | null = null;
  #destroyed = false;

  /** Loads the TLS files (ConfigError on a bad one), binds the address, resolves when listening. */
  static async create(config: ListenerConfig, opts: Omit<ListenerOptions, 'tls'> & { tls?: ListenerTls }): Promise<Listener> {
    const tls = opts.tls ?? await ListenerTls.load(config.tls, `listeners.${config.name}.tls`);
    const listener = new Listener(config, { ...opts, tls });
    await listener.listen();
    return listener;
  }

  constructor(config: ListenerConfig, opts: ListenerOptions) {
    this.#cfg = config;
    this.#tls = opts.tls;
    const key = `listeners.${config.name}`;
    if (config.mode === 'http' && !opts.onConnection) throw new ConfigError(key, 'http mode needs a connection handler');
    if (config.mode === 'tcp' && !opts.tunnel) throw new ConfigError(key, 'tcp mode needs a tunnel target');
    if (config.tls.allow.length > 0 && config.tls.clientAuth === 'none') {
      throw new ConfigError(`${key}.tls.allow`, 'allow needs client_auth = "require" or "optional"');
    }
    this.#allow = compileAllowList(config.tls.allow, `${key}.tls.allow`);
    // A connection without a certificate has no name on a non-empty allow list: fail closed.
    this.#allowWithoutCert = config.tls.allow.length === 0;
    this.#onConnection = config.mode === 'http' ? opts.onConnection ?? null : null;
    this.#tunnel = config.mode === 'tcp' ? opts.tunnel ?? null : null;
    this.#onTlsError = opts.onTlsError ?? null;
    this.#log = (opts.logger ?? silentLogger).child({ listener: config.name });
    // allowHalfOpen: a client's FIN must not end our side while the upstream still answers
    // (the tunnel forwards half-closes; the HTTP layer may still be writing a response).
    // noDelay: net/tls servers default to Nagle (http.createServer does not); a response
    // written as head + body would otherwise wait for the client's delayed ACK.
    this.#server = createServer({ ...this.#tls.serverOptions, allowHalfOpen: true, noDelay: true } as TlsOptions);
    this.#tls.attach(this.#server);
    this.#server.on('connection', this.#onRaw);
    this.#server.on('secureConnection', this.#onSecure);
    this.#server.on('tlsClientError', this.#onTlsClientError);
    this.#server.on('error', this.#onServerError);
  }

  get config(): ListenerConfig {
    return this.#cfg;
  }

  get tls(): ListenerTls {
    return this.#tls;
  }

  /** Established (post-handshake) connections now open: the active_connections gauge. */
  get connectionCount(): number {
    return this.#secure.size;
  }

  /**
   * Binds the configured address (port 0 = any free port); resolves with the bound address.
   * In a cluster worker with a fixed port, each worker binds its own SO_REUSEPORT socket and
   * the kernel spreads new connections over them (nginx's `reuseport`, HAProxy's default):
   * node:cluster's round-robin would accept every connection in the primary and pass it over
   * IPC. Port 0 keeps the shared socket, or each worker would get a different port.
   */
  listen(): Promise<AddressInfo> {
    const { host, port } = this.#cfg.address;
    const own = cluster.isWorker && port !== 0;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => { reject(err); };
      this.#server.once('error', onError);
      this.#server.listen({ host, port, ...(own ? { exclusive: true, reusePort: true } : {}) }, () => {
        this.#server.off('error', onError);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  /** The bound address; throws before listen() resolved. */
  address(): AddressInfo {
    const address = this.#server.address();
    if (address === null || typeof address !== 'object') throw new Error(`listener ${this.#cfg.name} is not bound`);
    return address;
  }

  get listening(): boolean {
    return this.#server.listening;
  }

  get stats(): ListenerStats {
    return {
      open: this.#secure.size,
      accepted: this.#accepted,
      refused: this.#refused,
      tlsErrors: this.#tlsErrors,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
    };
  }

  reload(): Promise<ReloadResult> {
    return this.#tls.reload();
  }

  readonly #onRaw = (socket: Socket): void => {
    this.#raw.add(socket);
    socket.once('close', () => {
      this.#raw.delete(socket);
      this.#checkDrained();
    });
  };

  readonly #onTlsClientError = (err: Error, socket: TLSSocket): void => {
    // Node's server verify callback accepts every chain and judges after the handshake: with
    // rejectUnauthorized it destroys an unverified client silently and reports the close as
    // ECONNRESET "socket hang up". authorizationError, set only on that path, has the real
    // reason (CERT_HAS_EXPIRED, CERT_REVOKED, UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...).
    const verdict = socket.authorizationError;
    const reason = verdict ? tlsErrorReason(Object.assign(new Error(String(verdict)), { code: String(verdict) })) : tlsErrorReason(err);
    this.#countTlsError(reason, err);
    // Node reports a handshake timeout here and nothing more: the socket stays open (and a
    // half-closed one sits in CLOSE-WAIT) until the peer goes away. Close it ourselves.
    socket.destroy();
  };

  readonly #onServerError = (err: Error): void => {
    // Accept failures (EMFILE) after listen(): keep serving, the next accept may succeed.
    this.#log.error({ err }, 'listener error');
  };

  readonly #onSocketError = (err: Error): void => {
    this.#log.debug({ err }, 'connection error');
  };

  #countTlsError(reason: string, err: Error | null): void {
    this.#tlsErrors.set(reason, (this.#tlsErrors.get(reason) ?? 0) + 1);
    this.#log.debug({ reason, err }, 'TLS client refused');
    this.#onTlsError?.(reason, err);
  }

  readonly #onSecure = (socket: TLSSocket): void => {
    socket.on('error', this.#onSocketError);
    if (this.#destroyed) {
      socket.destroy();
      return;
    }
    // client_auth = "optional": a certificate that was presented must still verify (see
    // ListenerTls.serverOptions). Nothing has been read from the socket yet.
    if (!socket.authorized && this.#cfg.tls.clientAuth === 'optional' && socket.getPeerX509Certificate() !== undefined) {
      const code = String(socket.authorizationError ?? 'certificate_verify_failed');
      this.#refused++;
      this.#countTlsError(tlsErrorReason(Object.assign(new Error(code), { code })), null);
      socket.destroy();
      return;
    }
    let identity: ClientIdentity | null;
    try {
      identity = identityFromSocket(socket);
    } catch (err) {
      this.#refused++;
      this.#countTlsError('identity_unreadable', err as Error);
      socket.destroy();
      return;
    }
    const allowed = identity === null ? this.#allowWithoutCert : this.#allow(identity);
    this.#accepted++;
    this.#secure.add(socket);
    socket.once('close', () => { this.#secure.delete(socket); });
    if (this.#tunnel !== null) {
      this.#startTunnel(socket, identity, allowed, this.#tunnel);
      return;
    }
    try {
      (this.#onConnection as ConnectionHandler)(socket, identity, allowed);
    } catch (err) {
      this.#log.error({ err }, 'connection handler threw');
      socket.destroy();
    }
  };

  #startTunnel(socket: TLSSocket, identity: ClientIdentity | null, allowed: boolean, target: TunnelTarget): void {
    if (!allowed) {
      this.#refused++;
      this.#log.debug({ subject: identity?.subject ?? null }, 'client not on the allow list');
      socket.destroy();
      return;
    }
    const tunnel = new Tunnel(socket, identity, {
      selector: target.selector,
      connector: target.connector,
      connectTimeoutMs: target.connectTimeoutMs,
      idleTimeoutMs: target.idleTimeoutMs ?? this.#cfg.limits.idleTimeoutMs,
      onEnd: (summary) => {
        this.#tunnels.delete(tunnel);
        this.#bytesIn += summary.bytesIn;
        this.#bytesOut += summary.bytesOut;
        target.onEnd?.(summary);
        this.#checkDrained();
      },
    });
    this.#tunnels.add(tunnel);
    void tunnel.start();
  }

  #checkDrained(): void {
    if (this.#drained !== null && this.#raw.size === 0 && this.#tunnels.size === 0) {
      const done = this.#drained;
      this.#drained = null;
      done();
    }
  }

  /**
   * Stops accepting and resolves once every connection (and, in tcp mode, every tunnel's
   * upstream side) has closed. Open connections are not touched: the HTTP layer ends its
   * keep-alive connections, tunnels run until their peers close; after the drain timeout the
   * server calls destroy(). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#tls.detach(this.#server);
      const serverClosed = new Promise<void>((done) => { this.#server.close(() => { done(); }); });
      const drained = new Promise<void>((done) => { this.#drained = done; });
      this.#checkDrained();
      void Promise.all([serverClosed, drained]).then(() => { resolve(); });
    });
    return this.#closing;
  }

  /** Closes every connection now (handshaking ones too) and stops accepting. Idempotent. */
  destroy(err?: Error): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    void this.close();
    for (const tunnel of this.#tunnels) tunnel.destroy(err);
    for (const socket of this.#raw) socket.destroy();
  }
}
