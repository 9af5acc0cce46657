// Egress TLS: connections to upstream endpoints on which the proxy presents its own client
// certificate and verifies the upstream's. Used by the pool (HTTP mode) and the tunnel (TCP
// mode). One SecureContext per upstream is built when the files are read, so a connect does
// not re-parse the CA bundle (tls.connect without `secureContext` builds a fresh one each time).
import {
  connect as tlsConnect, createSecureContext, type ConnectionOptions, type SecureContext, type SecureContextOptions, type TLSSocket,
} from 'node:tls';
import { isIP } from 'node:net';
import type { X509Certificate } from 'node:crypto';
import type { HostPort, UpstreamConfig } from '../config/types.ts';
import { ConfigError, ProxyError } from '../errors.ts';
import {
  checkValidity, describe, parseCaBundle, parseCertificates, parseMatchingKey, readFiles, readFilesSync,
  sameFiles, type FileBytes,
} from './pem-files.ts';
import type { ReloadResult } from './tls-context.ts';
import type { ReadInto } from '../pool/types.ts';

type FileKey = 'cert' | 'key' | 'ca';

export interface UpstreamCertificates {
  /** The proxy's client chain toward this upstream (leaf first), or empty when none is configured. */
  clientPem: string;
  client: X509Certificate[];
  /** One PEM per CA certificate trusted for the upstream; empty = Node's bundled roots. */
  caPem: string[];
  ca: X509Certificate[];
}

interface Loaded {
  files: FileBytes<FileKey>;
  context: SecureContext;
  certificates: UpstreamCertificates;
}

// Failures of the path to the endpoint rather than of TLS itself: a later attempt or another
// endpoint may succeed, so these map to the retryable UPSTREAM_CONNECT.
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN',
  'ENETUNREACH', 'ENETDOWN', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME',
]);

function noop(): void {}

function load(up: UpstreamConfig, files: FileBytes<FileKey>, keyPrefix: string): Loaded {
  if ((files.cert === null) !== (files.key === null)) {
    throw new ConfigError(`${keyPrefix}.${files.cert === null ? 'cert' : 'key'}`, 'cert and key must be configured together');
  }
  const options: SecureContextOptions = { minVersion: up.tls.minVersion };
  let client: X509Certificate[] = [];
  if (files.cert !== null && files.key !== null) {
    client = parseCertificates(files.cert, `${keyPrefix}.cert`);
    const leaf = client[0] as X509Certificate;
    checkValidity(leaf, `${keyPrefix}.cert`);
    parseMatchingKey(files.key, leaf, `${keyPrefix}.key`);
    options.cert = files.cert;
    options.key = files.key;
  }
  let ca: X509Certificate[] = [];
  if (files.ca !== null) {
    ca = parseCaBundle(files.ca, `${keyPrefix}.ca`);
    options.ca = files.ca;
  }
  let context: SecureContext;
  try {
    context = createSecureContext(options);
  } catch (err) {
    throw new ConfigError(keyPrefix, `TLS context rejected by OpenSSL: ${(err as Error).message}`, { cause: err });
  }
  return {
    files,
    context,
    certificates: {
      clientPem: client.map((c) => c.toString()).join(''),
      client,
      caPem: ca.map((c) => c.toString()),
      ca,
    },
  };
}

export class UpstreamConnector {
  readonly #up: UpstreamConfig;
  readonly #keyPrefix: string;
  #loaded: Loaded;
  /** Last TLS session per endpoint (RFC 8446 §2.2 resumption skips the certificate exchange). */
  readonly #sessions = new Map<string, Buffer>();
  #reloading: Promise<ReloadResult> | null = null;

  constructor(up: UpstreamConfig, keyPrefix = `upstreams.${up.name}.tls`) {
    this.#up = up;
    this.#keyPrefix = keyPrefix;
    this.#loaded = load(up, readFilesSync(this.#paths(), keyPrefix), keyPrefix);
  }

  get name(): string {
    return this.#up.name;
  }

  get certificates(): UpstreamCertificates {
    return this.#loaded.certificates;
  }

  #paths(): Record<FileKey, string | null> {
    return { cert: this.#up.tls.cert, key: this.#up.tls.key, ca: this.#up.tls.ca };
  }

  /**
   * Opens a verified mTLS connection. Rejects with ProxyError UPSTREAM_CONNECT (TCP failure,
   * timeout; retryable) or UPSTREAM_TLS (certificate or handshake failure). The resolved socket
   * carries none of the connect phase's listeners, except a one-shot 'session' listener that
   * stores the TLS 1.3 ticket arriving after the handshake. Attach an 'error' listener at once.
   * With TLS 1.3 an upstream that rejects our certificate does so after this resolves (its
   * alert follows the client Finished): the caller then sees a reset on first read.
   * With `onread`, the socket reads into that buffer and emits no 'data' (see ReadInto).
   */
  connect(endpoint: HostPort, timeoutMs: number, onread?: ReadInto): Promise<TLSSocket> {
    const key = `${endpoint.host}:${endpoint.port}`;
    // RFC 6066 §3: no SNI for IP literals; the certificate is then checked against the IP.
    const servername = this.#up.tls.serverName ?? (isIP(endpoint.host) === 0 ? endpoint.host : undefined);
    const session = this.#sessions.get(key);
    const sessions = this.#sessions;
    return new Promise<TLSSocket>((resolve, reject) => {
      let tcpConnected = false;
      // allowHalfOpen is honoured by tls.connect (passed to the TLSSocket) but missing from
      // @types/node's ConnectionOptions (as are noDelay and onread); the tunnel needs it to
      // forward half-closes.
      const options: ConnectionOptions & { allowHalfOpen: boolean; noDelay: boolean; onread?: ReadInto } = {
        ...(onread ? { onread } : {}),
        host: endpoint.host,
        port: endpoint.port,
        servername,
        secureContext: this.#loaded.context,
        session,
        rejectUnauthorized: true,
        allowHalfOpen: true,
        noDelay: true,
      };
      const socket = tlsConnect(options);
      const cleanup = (): void => {
        clearTimeout(timer);
        socket.off('connect', onTcp);
        socket.off('secureConnect', onSecure);
        socket.off('error', onError);
        socket.off('close', onClose);
      };
      const fail = (err: ProxyError): void => {
        cleanup();
        socket.on('error', noop); // the socket is dead; a late error must not crash the process
        socket.destroy();
        if (session !== undefined) sessions.delete(key); // a ticket the server no longer takes
        reject(err);
      };
      const onTcp = (): void => { tcpConnected = true; };
      const onSecure = (): void => {
        cleanup();
        socket.setNoDelay(true);
        resolve(socket);
      };
      const onError = (err: NodeJS.ErrnoException): void => {
        const code = err.code ?? '';
        if (!tcpConnected || NETWORK_CODES.has(code)) {
          fail(new ProxyError('UPSTREAM_CONNECT', `connect to ${key} failed: ${code || err.message}`, { cause: err }));
        } else {
          fail(new ProxyError('UPSTREAM_TLS', `TLS handshake with ${key} failed: ${code ? `${code}: ` : ''}${err.message}`, { cause: err }));
        }
      };
      const onClose = (): void => {
        fail(new ProxyError('UPSTREAM_CONNECT', `connection to ${key} closed during the TLS handshake`));
      };
      const onTimeout = (): void => {
        const cause = Object.assign(new Error(`connect timeout after ${timeoutMs}ms`), { code: 'ETIMEDOUT' });
        fail(new ProxyError('UPSTREAM_CONNECT', `connect to ${key} timed out after ${timeoutMs}ms`, { cause }));
      };
      const timer = setTimeout(onTimeout, timeoutMs);
      timer.unref();
      socket.once('session', (ticket: Buffer) => { sessions.set(key, ticket); });
      socket.on('connect', onTcp);
      socket.on('secureConnect', onSecure);
      socket.on('error', onError);
      socket.on('close', onClose);
    });
  }

  /** Drops stored sessions for an endpoint (e.g. after its certificate changed). */
  forgetSession(endpoint: HostPort): void {
    this.#sessions.delete(`${endpoint.host}:${endpoint.port}`);
  }

  /**
   * Re-reads cert, key and CA; applies them only if all parse and the key matches. New
   * connections use them; stored sessions are dropped because they were verified under the
   * old trust. Open (pooled) connections are left alone.
   */
  reload(): Promise<ReloadResult> {
    this.#reloading ??= this.#reload().finally(() => { this.#reloading = null; });
    return this.#reloading;
  }

  async #reload(): Promise<ReloadResult> {
    try {
      const files = await readFiles(this.#paths(), this.#keyPrefix);
      if (sameFiles(files, this.#loaded.files)) return { changed: false };
      this.#loaded = load(this.#up, files, this.#keyPrefix);
    } catch (err) {
      return { changed: false, error: describe(err) };
    }
    this.#sessions.clear();
    return { changed: true };
  }
}

/** The connector for one upstream; reads its files now (throws ConfigError on a bad file). */
export function upstreamConnector(up: UpstreamConfig): UpstreamConnector {
  return new UpstreamConnector(up);
}
