// The listener's server-side TLS material, loaded from the configured files and hot-swapped on
// reload (SIGHUP, POST /api/reload) without touching established connections: Node's
// server.setSecureContext only affects handshakes that start afterwards.
import { createSecureContext, type SecureContextOptions, type Server, type TlsOptions } from 'node:tls';
import type { X509Certificate } from 'node:crypto';
import type { ListenerTlsConfig } from '../config/types.ts';
import { ConfigError } from '../errors.ts';
import {
  checkCrls, checkValidity, describe, parseCaBundle, parseCertificates, parseMatchingKey,
  readFiles, readFilesSync, sameFiles, type FileBytes,
} from './pem-files.ts';

type FileKey = 'cert' | 'key' | 'client_ca' | 'crl';

export interface ListenerCertificates {
  /** The served chain as PEM, leaf first. */
  serverPem: string;
  server: X509Certificate[];
  /** One PEM per client CA certificate; empty when client_auth = "none". */
  clientCaPem: string[];
  clientCa: X509Certificate[];
}

export interface ReloadResult {
  changed: boolean;
  /** Why the files on disk were not applied; the previous context stays in use. */
  error?: string;
}

interface Prepared {
  files: FileBytes<FileKey>;
  context: SecureContextOptions;
  certificates: ListenerCertificates;
}

function filePaths(cfg: ListenerTlsConfig): Record<FileKey, string | null> {
  // With client_auth = "none" the CA and CRL are not used, so they are not read either.
  const verifies = cfg.clientAuth !== 'none';
  return { cert: cfg.cert, key: cfg.key, client_ca: verifies ? cfg.clientCa : null, crl: verifies ? cfg.crl : null };
}

/** Every check, shared by the first load and reload; nothing is applied here. */
async function prepare(cfg: ListenerTlsConfig, files: FileBytes<FileKey>, keyPrefix: string): Promise<Prepared> {
  const server = parseCertificates(files.cert as Buffer, `${keyPrefix}.cert`);
  const leaf = server[0] as X509Certificate;
  checkValidity(leaf, `${keyPrefix}.cert`);
  parseMatchingKey(files.key as Buffer, leaf, `${keyPrefix}.key`);
  let clientCa: X509Certificate[] = [];
  if (cfg.clientAuth !== 'none') {
    // Without `ca`, Node verifies client certificates against its bundled public root store:
    // any publicly issued certificate would authenticate. Never fall back to that.
    if (files.client_ca === null) throw new ConfigError(`${keyPrefix}.client_ca`, `client_auth = "${cfg.clientAuth}" needs client_ca`);
    clientCa = parseCaBundle(files.client_ca, `${keyPrefix}.client_ca`);
  }
  const context: SecureContextOptions = {
    cert: files.cert as Buffer,
    key: files.key as Buffer,
    minVersion: cfg.minVersion,
  };
  if (files.client_ca !== null) context.ca = files.client_ca;
  // Node sets X509_V_FLAG_CRL_CHECK | CRL_CHECK_ALL: every CA below the root of a client's
  // chain then needs a CRL in this file, or its certificates fail with "unable to get CRL".
  if (files.crl !== null) context.crl = await checkCrls(files.crl, clientCa, `${keyPrefix}.crl`);
  try {
    createSecureContext(context);
  } catch (err) {
    throw new ConfigError(`${keyPrefix}`, `TLS context rejected by OpenSSL: ${(err as Error).message}`, { cause: err });
  }
  return {
    files,
    context,
    certificates: {
      serverPem: server.map((c) => c.toString()).join(''),
      server,
      clientCaPem: clientCa.map((c) => c.toString()),
      clientCa,
    },
  };
}

export class ListenerTls {
  readonly #cfg: ListenerTlsConfig;
  readonly #keyPrefix: string;
  readonly #servers = new Set<Server>();
  #current: Prepared;
  #reloading: Promise<ReloadResult> | null = null;

  private constructor(cfg: ListenerTlsConfig, keyPrefix: string, prepared: Prepared) {
    this.#cfg = cfg;
    this.#keyPrefix = keyPrefix;
    this.#current = prepared;
  }

  /** Reads and validates the files; throws ConfigError naming the key (`listeners.<name>.tls.cert`). */
  static async load(cfg: ListenerTlsConfig, keyPrefix = 'tls'): Promise<ListenerTls> {
    const files = readFilesSync(filePaths(cfg), keyPrefix);
    return new ListenerTls(cfg, keyPrefix, await prepare(cfg, files, keyPrefix));
  }

  get config(): ListenerTlsConfig {
    return this.#cfg;
  }

  /**
   * Options for tls.createServer. client_auth = "optional" follows Go's
   * VerifyClientCertIfGiven and Envoy's require_client_certificate = false: no certificate is
   * fine, but a presented one must verify. Node cannot express that in the handshake
   * (rejectUnauthorized would also refuse an absent certificate), so the handshake accepts and
   * the listener destroys the connection when a certificate was presented but
   * `socket.authorized` is false, before anything is read from it.
   */
  get serverOptions(): TlsOptions {
    const auth = this.#cfg.clientAuth;
    return {
      ...this.#current.context,
      requestCert: auth !== 'none',
      rejectUnauthorized: auth === 'require',
      handshakeTimeout: this.#cfg.handshakeTimeoutMs,
    };
  }

  get certificates(): ListenerCertificates {
    return this.#current.certificates;
  }

  /** Servers whose context reload() replaces. */
  attach(server: Server): void {
    this.#servers.add(server);
  }

  detach(server: Server): void {
    this.#servers.delete(server);
  }

  /**
   * Re-reads the files and, if their bytes changed and they pass every check, swaps them into
   * each attached server. New handshakes use the new context; open connections keep theirs.
   * Session tickets issued under the old context stop resuming (setSecureContext makes fresh
   * ticket keys), which is wanted: a resumed session skips certificate verification, so a
   * client revoked by a new CRL must not ride an old ticket back in.
   */
  reload(): Promise<ReloadResult> {
    // Concurrent SIGHUP and POST /api/reload share one pass over the files.
    this.#reloading ??= this.#reload().finally(() => { this.#reloading = null; });
    return this.#reloading;
  }

  async #reload(): Promise<ReloadResult> {
    let next: Prepared;
    try {
      const files = await readFiles(filePaths(this.#cfg), this.#keyPrefix);
      if (sameFiles(files, this.#current.files)) return { changed: false };
      next = await prepare(this.#cfg, files, this.#keyPrefix);
    } catch (err) {
      return { changed: false, error: describe(err) };
    }
    try {
      for (const server of this.#servers) server.setSecureContext(next.context);
    } catch (err) {
      // Validation used the same options, so this is not expected; the servers not yet
      // switched keep the old context and the next reload retries all of them.
      return { changed: false, error: `${this.#keyPrefix}: applying the new context failed: ${describe(err)}` };
    }
    this.#current = next;
    return { changed: true };
  }
}
