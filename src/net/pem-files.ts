// Reading and checking the PEM files a TLS context is built from, shared by the listener side
// (tls-context.ts) and the upstream side (upstream-tls.ts). Every check here runs before a new
// context replaces a working one: a half-written or mismatched file on SIGHUP must never turn
// into failed handshakes (ghostunnel's reload keeps the old listener on any load error).
import { readFile, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import type * as x509 from '@peculiar/x509';
import { x509 as x509lib } from '../certs/x509-lib.ts';
import { ConfigError } from '../errors.ts';

/** File contents by key; null where the config has no path. */
export type FileBytes<K extends string> = Record<K, Buffer | null>;

function readError(path: string, file: string, err: unknown): ConfigError {
  const code = (err as NodeJS.ErrnoException).code;
  return new ConfigError(path, `cannot read ${file}: ${code ?? (err as Error).message}`, { cause: err });
}

export function readFilesSync<K extends string>(paths: Record<K, string | null>, keyPrefix: string): FileBytes<K> {
  const out = {} as FileBytes<K>;
  for (const key of Object.keys(paths) as K[]) {
    const file = paths[key];
    try {
      out[key] = file === null ? null : readFileSync(file);
    } catch (err) {
      throw readError(`${keyPrefix}.${key}`, file as string, err);
    }
  }
  return out;
}

// node:fs's callback form, promisified: node:fs/promises loads readline and the REPL history
// with it, for this one call (part of ~0.9 MiB of idle RSS; scripts/build.mjs).
const readFileAsync = promisify(readFile);

export async function readFiles<K extends string>(paths: Record<K, string | null>, keyPrefix: string): Promise<FileBytes<K>> {
  const keys = Object.keys(paths) as K[];
  const values = await Promise.all(keys.map(async (key) => {
    const file = paths[key];
    try {
      return file === null ? null : await readFileAsync(file);
    } catch (err) {
      throw readError(`${keyPrefix}.${key}`, file as string, err);
    }
  }));
  const out = {} as FileBytes<K>;
  keys.forEach((key, i) => { out[key] = values[i] ?? null; });
  return out;
}

export function sameFiles<K extends string>(a: FileBytes<K>, b: FileBytes<K>): boolean {
  for (const key of Object.keys(a) as K[]) {
    const x = a[key];
    const y = b[key];
    if (x === null || y === null ? x !== y : !x.equals(y)) return false;
  }
  return true;
}

/** PEM blocks with the given label, each including its BEGIN/END lines. */
export function pemBlocks(text: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ${label}-----[\\s\\S]*?-----END ${label}-----`, 'g');
  return text.match(re) ?? [];
}

/** All certificates in a PEM bundle, in file order; at least one. */
export function parseCertificates(bytes: Buffer, path: string): X509Certificate[] {
  const blocks = pemBlocks(bytes.toString('latin1'), 'CERTIFICATE');
  if (blocks.length === 0) throw new ConfigError(path, 'no PEM certificate found');
  return blocks.map((pem, i) => {
    try {
      return new X509Certificate(pem);
    } catch (err) {
      throw new ConfigError(path, `certificate #${i + 1} does not parse: ${(err as Error).message}`, { cause: err });
    }
  });
}

export function checkValidity(cert: X509Certificate, path: string, now = new Date()): void {
  if (cert.validFromDate > now) throw new ConfigError(path, `certificate ${cert.subject.replaceAll('\n', ', ')} is not valid before ${cert.validFromDate.toISOString()}`);
  if (cert.validToDate < now) throw new ConfigError(path, `certificate ${cert.subject.replaceAll('\n', ', ')} expired at ${cert.validToDate.toISOString()}`);
}

/** The private key, checked against the first certificate of the chain. */
export function parseMatchingKey(bytes: Buffer, leaf: X509Certificate, path: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(bytes);
  } catch (err) {
    // No passphrase setting exists: an encrypted key lands here too.
    throw new ConfigError(path, `private key does not parse: ${(err as Error).message}`, { cause: err });
  }
  if (!leaf.checkPrivateKey(key)) throw new ConfigError(path, 'private key does not match the certificate');
  return key;
}

/** A CA bundle: every entry must be a CA certificate (basicConstraints cA). */
export function parseCaBundle(bytes: Buffer, path: string): X509Certificate[] {
  const cas = parseCertificates(bytes, path);
  cas.forEach((ca, i) => {
    if (!ca.ca) throw new ConfigError(path, `certificate #${i + 1} (${ca.subject.replaceAll('\n', ', ')}) is not a CA certificate`);
  });
  return cas;
}

/**
 * Each CRL must parse, be current and be signed by one of `cas`. OpenSSL checks none of this
 * until a client connects, and then a stale or foreign CRL fails every handshake
 * ("CRL has expired", "unable to get certificate CRL"), an outage rather than a reload error.
 * Returns the CRLs as PEM for OpenSSL, which reads only the RFC 7468 §5 label "X509 CRL";
 * blocks labelled "CRL" (as @peculiar/x509 writes them) are relabelled rather than refused.
 */
export async function checkCrls(bytes: Buffer, cas: X509Certificate[], path: string, now = new Date()): Promise<Buffer> {
  const text = bytes.toString('latin1');
  const blocks = [...pemBlocks(text, 'X509 CRL'), ...pemBlocks(text, 'CRL')];
  if (blocks.length === 0) throw new ConfigError(path, 'no PEM CRL ("-----BEGIN X509 CRL-----") found');
  const keys = cas.map((ca) => new (x509lib()).X509Certificate(ca.raw).publicKey);
  const out: string[] = [];
  for (const [i, pem] of blocks.entries()) {
    let crl: x509.X509Crl;
    try {
      crl = new (x509lib()).X509Crl(pem.replace(/-----(BEGIN|END) (?:X509 )?CRL-----/g, '-----$1 X509 CRL-----'));
    } catch (err) {
      throw new ConfigError(path, `CRL #${i + 1} does not parse: ${(err as Error).message}`, { cause: err });
    }
    if (crl.thisUpdate > now) throw new ConfigError(path, `CRL #${i + 1} is not valid before ${crl.thisUpdate.toISOString()}`);
    if (crl.nextUpdate !== undefined && crl.nextUpdate < now) throw new ConfigError(path, `CRL #${i + 1} expired at ${crl.nextUpdate.toISOString()}`);
    let signed = false;
    for (const publicKey of keys) {
      if (await crl.verify({ publicKey }).catch(() => false)) {
        signed = true;
        break;
      }
    }
    if (!signed) throw new ConfigError(path, `CRL #${i + 1} (issuer ${crl.issuer}) is not signed by any certificate in client_ca`);
    out.push(crl.toString('pem').replace(/-----(BEGIN|END) (?:X509 )?CRL-----/g, '-----$1 X509 CRL-----'));
  }
  return Buffer.from(`${out.join('\n')}\n`, 'latin1');
}

export function describe(err: unknown): string {
  return err instanceof ConfigError ? err.toString() : err instanceof Error ? err.message : String(err);
}
