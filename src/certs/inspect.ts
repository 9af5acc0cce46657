// Certificate checks for `mtls-proxy check` and start-up: what an operator would otherwise
// learn from a failed handshake at 3 a.m. (key/cert mismatch, expiry, wrong EKU, a chain that
// cannot be built). Parsing and signatures use node:crypto (OpenSSL, what TLS will use);
// names, SANs and CRLs use @peculiar/x509, which exposes them structurally.
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type * as x509 from '@peculiar/x509';
import { x509 as x509lib } from './x509-lib.ts';
import type { Config } from '../config/types.ts';

export interface Problem {
  /** Config key path the problem belongs to ("listeners.edge.tls.cert"). */
  path: string;
  level: 'error' | 'warning';
  message: string;
}

export interface CertificateInfo {
  /** RFC 4514 string, last RDN first: "CN=orders,O=Example" for a DER name [O=Example, CN=orders]. */
  subject: string;
  issuer: string;
  /** "DNS:localhost", "IP:127.0.0.1", "URI:spiffe://prod/orders", "email:a@b". */
  sans: string[];
  notBefore: Date;
  notAfter: Date;
  /** Whole days until notAfter, rounded down; negative once expired. */
  daysLeft: number;
  /** SHA-256 of the DER encoding, lowercase hex (the XFCC Hash). */
  sha256: string;
}

const DAY_MS = 86_400_000;
const EXPIRY_WARNING_DAYS = 30;
const MAX_CHAIN_DEPTH = 10;
const EKU = { serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2', any: '2.5.29.37.0' } as const;
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Facts about the first certificate in a PEM text, for the admin API and messages. */
export function describeCertificate(pem: string | Buffer, now: Date = new Date()): CertificateInfo {
  const text = typeof pem === 'string' ? pem : pem.toString('utf8');
  const first = text.match(PEM_CERT)?.[0];
  if (first === undefined) throw new Error('no PEM certificate found');
  const cert = new (x509lib()).X509Certificate(first);
  const san = cert.getExtension(x509lib().SubjectAlternativeNameExtension);
  const der = Buffer.from(cert.rawData);
  return {
    subject: formatName(cert.subjectName),
    issuer: formatName(cert.issuerName),
    sans: (san?.names.toJSON() ?? []).map((name) => `${SAN_LABELS[name.type] ?? name.type}:${name.value}`),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    daysLeft: Math.floor((cert.notAfter.getTime() - now.getTime()) / DAY_MS),
    sha256: createHash('sha256').update(der).digest('hex'),
  };
}

const SAN_LABELS: Readonly<Record<string, string>> = { dns: 'DNS', ip: 'IP', url: 'URI', email: 'email' };

// RFC 4514 section 2.4: these characters are escaped anywhere, '#' and ' ' at the start, ' ' at the end.
function escapeRdnValue(value: string): string {
  return value
    .replace(/[\\,+"<>;]/g, (ch) => `\\${ch}`)
    .replace(/^[#\s]/, (ch) => `\\${ch}`)
    .replace(/\s$/, (ch) => `\\${ch}`);
}

// RFC 4514 section 2.1 lists RDNs last-to-first, as OpenSSL's XN_FLAG_RFC2253 and Envoy's XFCC
// do: a DER name [C, O, CN] prints "CN=..,O=..,C=..". The admin API shows what XFCC shows.
function formatName(name: x509.Name): string {
  return name
    .toJSON()
    .reverse()
    .map((rdn) => Object.entries(rdn).flatMap(([type, values]) => values.map((v) => `${type}=${escapeRdnValue(v)}`)).join('+'))
    .join(',');
}

/** Run every certificate check the config implies; problems are in config order. */
export function checkCertificates(config: Config, now: Date = new Date()): Problem[] {
  const checker = new CertificateChecker(now);
  const bundles: Array<{ path: string; file: string }> = [];
  for (const l of config.listeners) if (l.tls.clientCa !== null) bundles.push({ path: `listeners.${l.name}.tls.client_ca`, file: l.tls.clientCa });
  for (const u of config.upstreams.values()) if (u.tls.ca !== null) bundles.push({ path: `upstreams.${u.name}.tls.ca`, file: u.tls.ca });
  // Anchors first: any configured CA may complete any chain (see checkPair).
  for (const b of bundles) checker.checkBundle(b.path, b.file);

  for (const l of config.listeners) {
    const base = `listeners.${l.name}.tls`;
    checker.checkPair(base, l.tls.cert, l.tls.key, 'serverAuth');
    if (l.tls.crl !== null) checker.checkCrl(`${base}.crl`, l.tls.crl, l.tls.clientCa);
  }
  for (const u of config.upstreams.values()) {
    if (u.tls.cert !== null && u.tls.key !== null) checker.checkPair(`upstreams.${u.name}.tls`, u.tls.cert, u.tls.key, 'clientAuth');
  }
  return checker.problems;
}

type Loaded<T> = { ok: true; value: T } | { ok: false; message: string };

class CertificateChecker {
  readonly problems: Problem[] = [];
  readonly #now: Date;
  readonly #anchors: X509Certificate[] = [];
  readonly #files = new Map<string, Loaded<X509Certificate[]>>();

  constructor(now: Date) {
    this.#now = now;
  }

  #report(path: string, level: Problem['level'], message: string): void {
    this.problems.push({ path, level, message });
  }

  #certificates(file: string): Loaded<X509Certificate[]> {
    let loaded = this.#files.get(file);
    if (loaded === undefined) {
      loaded = readCertificates(file);
      this.#files.set(file, loaded);
    }
    return loaded;
  }

  checkBundle(path: string, file: string): void {
    const loaded = this.#certificates(file);
    if (!loaded.ok) return this.#report(path, 'error', loaded.message);
    const cas = loaded.value.filter((c) => c.ca);
    if (cas.length === 0) {
      return this.#report(path, 'error', `${file} contains no CA certificate (${loaded.value.length} certificate(s), none with basicConstraints CA:TRUE)`);
    }
    for (const ca of cas) {
      this.#checkValidity(path, ca, () => `CA certificate ${subjectOf(ca)}`);
      if (!this.#anchors.some((a) => a.fingerprint256 === ca.fingerprint256)) this.#anchors.push(ca);
    }
  }

  checkPair(base: string, certFile: string, keyFile: string, usage: 'serverAuth' | 'clientAuth'): void {
    const certPath = `${base}.cert`;
    const loaded = this.#certificates(certFile);
    const key = readPrivateKey(keyFile);
    if (!key.ok) this.#report(`${base}.key`, 'error', key.message);
    else this.#checkKeyFileMode(`${base}.key`, keyFile);
    if (!loaded.ok) return this.#report(certPath, 'error', loaded.message);
    const [leaf, ...intermediates] = loaded.value;
    if (leaf === undefined) return;

    if (key.ok && !matchesKey(leaf, key.value)) this.#report(certPath, 'error', `key does not match certificate (key file ${keyFile})`);
    this.#checkValidity(certPath, leaf, 'certificate');
    for (const extra of intermediates) this.#checkValidity(certPath, extra, () => `chain certificate ${subjectOf(extra)}`);

    const ekus = leaf.keyUsage;
    if (ekus !== undefined && ekus.length > 0 && !ekus.includes(EKU[usage]) && !ekus.includes(EKU.any)) {
      const role = usage === 'serverAuth' ? 'a TLS server certificate (listener)' : 'a TLS client certificate (toward the upstream)';
      this.#report(certPath, 'error', `extended key usage does not allow ${usage}, needed as ${role}; it allows ${ekus.map(ekuName).join(', ')}`);
    }
    this.#checkChain(certPath, leaf, intermediates);
  }

  // The leaf must lead, through certificates in its own file, to a CA that is either in the
  // file itself (a self-signed root shipped with the chain) or in a configured CA bundle.
  #checkChain(path: string, leaf: X509Certificate, intermediates: readonly X509Certificate[]): void {
    const inAnchors = (c: X509Certificate): boolean => this.#anchors.some((a) => a.fingerprint256 === c.fingerprint256);
    let current = leaf;
    for (let depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
      if (inAnchors(current)) return;
      const selfSigned = current.subject === current.issuer && current.verify(current.publicKey);
      if (selfSigned) {
        if (current.ca && current !== leaf) return;
        return this.#report(path, 'warning', `chain not verifiable: certificate is self-signed (${subjectOf(current)}) and not in any configured CA`);
      }
      const named = [...intermediates, ...this.#anchors].filter((c) => c.subject === current.issuer && c !== current);
      const issuer = named.find((c) => current.verify(c.publicKey));
      if (issuer === undefined) {
        if (named.length > 0) {
          return this.#report(path, 'error', `${subjectOf(current)} is not signed by the configured CA ${issuerOf(current)}: same name, different key (was the CA regenerated?)`);
        }
        return this.#report(path, 'warning', `chain not verifiable: issuer ${issuerOf(current)} not in any configured CA`);
      }
      if (!issuer.ca) return this.#report(path, 'error', `${subjectOf(current)} is issued by ${subjectOf(issuer)}, which is not a CA`);
      if (inAnchors(issuer)) return;
      current = issuer;
    }
    this.#report(path, 'error', `certificate chain longer than ${MAX_CHAIN_DEPTH}`);
  }

  /** `describe` names the certificate in a problem; it is only called when there is one. */
  #checkValidity(path: string, cert: X509Certificate, describe: string | (() => string)): void {
    const now = this.#now.getTime();
    const from = cert.validFromDate;
    const to = cert.validToDate;
    if (now >= from.getTime() && now <= to.getTime() && to.getTime() - now >= EXPIRY_WARNING_DAYS * DAY_MS) return;
    const what = typeof describe === 'string' ? describe : describe();
    if (now < from.getTime()) return this.#report(path, 'error', `${what} is not valid until ${from.toISOString()}`);
    if (now > to.getTime()) return this.#report(path, 'error', `${what} expired on ${to.toISOString()}`);
    const days = Math.floor((to.getTime() - now) / DAY_MS);
    if (days < EXPIRY_WARNING_DAYS) this.#report(path, 'warning', `${what} expires in ${days} day${days === 1 ? '' : 's'} (${to.toISOString()})`);
  }

  // OpenSSH and ghostunnel refuse group/world-readable keys; we only warn, since containers
  // often mount secrets with other modes and the proxy runs as their only reader.
  #checkKeyFileMode(path: string, file: string): void {
    if (process.platform === 'win32') return;
    const mode = statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0) this.#report(path, 'warning', `${file} is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}); chmod 600 it`);
  }

  checkCrl(path: string, file: string, clientCa: string | null): void {
    let crl: x509.X509Crl;
    try {
      crl = new (x509lib()).X509Crl(readFileSync(file));
    } catch (err) {
      return this.#report(path, 'error', `cannot use CRL ${file}: ${reason(err)}`);
    }
    if (crl.nextUpdate !== undefined && crl.nextUpdate.getTime() < this.#now.getTime()) {
      this.#report(path, 'warning', `CRL is out of date: its next update was due ${crl.nextUpdate.toISOString()}`);
    }
    const cas = clientCa === null ? null : this.#certificates(clientCa);
    if (cas === null || !cas.ok) return;
    const issuer = formatName(crl.issuerName);
    const known = cas.value.filter((c) => c.ca).map((c) => formatName(new (x509lib()).X509Certificate(c.raw).subjectName));
    if (!known.includes(issuer)) this.#report(path, 'warning', `CRL issuer ${issuer} is not a CA in client_ca, so it revokes nothing`);
  }
}

function readCertificates(file: string): Loaded<X509Certificate[]> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, message: `cannot read ${file}: ${reason(err)}` };
  }
  const blocks = text.match(PEM_CERT) ?? [];
  if (blocks.length === 0) return { ok: false, message: `no PEM certificate found in ${file}` };
  const certs: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      certs.push(new X509Certificate(block));
    } catch (err) {
      return { ok: false, message: `certificate #${i + 1} in ${file} cannot be parsed: ${reason(err)}` };
    }
  }
  return { ok: true, value: certs };
}

function readPrivateKey(file: string): Loaded<KeyObject> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { ok: false, message: `cannot read ${file}: ${reason(err)}` };
  }
  if (text.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') || /Proc-Type:\s*4,ENCRYPTED/.test(text)) {
    return { ok: false, message: `${file} holds an encrypted private key; the proxy needs it unencrypted` };
  }
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) return { ok: false, message: `no PEM private key found in ${file}` };
  try {
    return { ok: true, value: createPrivateKey(text) };
  } catch (err) {
    return { ok: false, message: `private key in ${file} cannot be parsed: ${reason(err)}` };
  }
}

function matchesKey(cert: X509Certificate, key: KeyObject): boolean {
  try {
    return cert.checkPrivateKey(key);
  } catch {
    return false; // OpenSSL throws rather than answers when the key types differ (RSA vs EC)
  }
}

function subjectOf(cert: X509Certificate): string {
  return formatName(new (x509lib()).X509Certificate(cert.raw).subjectName);
}

function issuerOf(cert: X509Certificate): string {
  return formatName(new (x509lib()).X509Certificate(cert.raw).issuerName);
}

function ekuName(oid: string): string {
  const names: Record<string, string> = { [EKU.serverAuth]: 'serverAuth', [EKU.clientAuth]: 'clientAuth', '1.3.6.1.5.5.7.3.3': 'codeSigning', '1.3.6.1.5.5.7.3.4': 'emailProtection' };
  return names[oid] ?? oid;
}

function reason(err: unknown): string {
  if (err instanceof Error) {
    const code = 'code' in err && typeof err.code === 'string' ? err.code : null;
    if (code === 'ENOENT') return 'no such file';
    if (code === 'EACCES') return 'permission denied';
    return err.message;
  }
  return String(err);
}
