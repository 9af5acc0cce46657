// Who is on the other end of a client-authenticated connection, the allow-list check, and the
// X-Forwarded-Client-Cert value. Computed once per connection (callers cache it): nothing here
// runs per request except the compiled allow-list closure and formatXfcc.
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { ConfigError } from '../errors.ts';
import { attributeText, formatRfc4514, OID_CN, readCertificateNames } from './x509-names.ts';

export interface ClientIdentity {
  /** RFC 4514 string as Envoy prints it (OpenSSL XN_FLAG_RFC2253): reverse DER order, e.g. "CN=orders,O=Example" for DER [O, CN]. */
  subject: string;
  /** The most specific CN (the last in DER order, as Go's pkix.Name keeps it), decoded, or null. */
  cn: string | null;
  dns: string[];
  uris: string[];
  /** Lowercase hex SHA-256 of the certificate's DER. */
  sha256: string;
  notAfter: Date;
  /** Lowercase hex serial number. */
  serial: string;
}

/** Builds the identity of an already verified certificate. Throws if its DER cannot be read. */
export function identityFromCertificate(cert: X509Certificate): ClientIdentity {
  const names = readCertificateNames(cert.raw);
  let cn: string | null = null;
  for (const rdn of names.subject) {
    for (const attr of rdn) {
      if (attr.oid === OID_CN) cn = attributeText(attr) ?? cn;
    }
  }
  return {
    subject: formatRfc4514(names.subject),
    cn,
    dns: names.dns,
    uris: names.uris,
    sha256: cert.fingerprint256.replaceAll(':', '').toLowerCase(),
    notAfter: cert.validToDate,
    serial: names.serial,
  };
}

/**
 * The identity of the peer certificate, or null when none was presented or it did not verify
 * (client_auth = "optional" lets the handshake finish without a verified chain; such a
 * certificate must never be mistaken for an identity). Call once per connection.
 */
export function identityFromSocket(socket: TLSSocket): ClientIdentity | null {
  if (!socket.authorized) return null;
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return null;
  // A SHA-256 fingerprint names one certificate, and an identity is read from the certificate
  // alone: clients that reconnect with the same certificate share one (read once, not per
  // handshake: DER parsing and the RFC 4514 subject were ~5% of the proxy's CPU per new
  // connection under Connection: close).
  const fingerprint = cert.fingerprint256;
  let id = identities.get(fingerprint);
  if (id === undefined) {
    id = identityFromCertificate(cert);
    // shared by every connection that presents the certificate: nobody may change it
    Object.freeze(id.dns);
    Object.freeze(id.uris);
    Object.freeze(id);
    if (identities.size >= IDENTITY_CACHE_SIZE) identities.delete(identities.keys().next().value!);
    identities.set(fingerprint, id);
  }
  return id;
}

/** Identities of recently seen certificates, by OpenSSL's fingerprint string; oldest first. */
const identities = new Map<string, ClientIdentity>();
const IDENTITY_CACHE_SIZE = 1024;
const xfccs = new WeakMap<ClientIdentity, string>();

/** formatXfcc(id), formatted once per identity. */
export function xfccOf(id: ClientIdentity): string {
  let xfcc = xfccs.get(id);
  if (xfcc === undefined) {
    xfcc = formatXfcc(id);
    xfccs.set(id, xfcc);
  }
  return xfcc;
}

export type AllowList = (id: ClientIdentity) => boolean;

const allowAll: AllowList = () => true;

function normaliseDns(name: string): string {
  const lower = name.toLowerCase(); // RFC 4343: DNS names compare case-insensitively
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** `*` matches any run of characters (including "/"); parts = pattern.split('*'), length >= 2. */
function globMatch(parts: readonly string[], s: string): boolean {
  const head = parts[0] as string;
  const tail = parts[parts.length - 1] as string;
  if (s.length < head.length + tail.length || !s.startsWith(head) || !s.endsWith(tail)) return false;
  const limit = s.length - tail.length;
  let pos = head.length;
  // Leftmost placement of each middle literal is optimal for '*'-only globs: linear, no backtracking.
  for (let i = 1; i < parts.length - 1; i++) {
    const part = parts[i] as string;
    const at = s.indexOf(part, pos);
    if (at < 0 || at + part.length > limit) return false;
    pos = at + part.length;
  }
  return true;
}

/**
 * Compiles allow-list entries once into a matcher (an entry matching = allowed; empty list = all).
 *
 * - `CN=<name>`: exact, case-sensitive comparison with the certificate's CN (ghostunnel --allow-cn).
 * - `DNS=<name>`: any dNSName SAN, case-insensitive. `*.internal` matches exactly one more label
 *   ("a.internal", not "internal", not "a.b.internal"), the RFC 6125 §6.4.3 reading a TLS client
 *   applies to a wildcard certificate; `**.internal` matches one or more labels ("a.b.internal").
 *   The wildcard is only allowed as the whole left-most label: being stricter than expected
 *   fails closed (a 403), being looser would let in names nobody listed.
 * - `URI=<uri>`: any URI SAN, case-sensitive (SPIFFE IDs compare exactly); `*` matches any run
 *   of characters, so `spiffe://prod/*` covers `spiffe://prod/a/b`.
 *
 * Throws ConfigError for malformed entries; `keyPath` names the config key in the message.
 */
export function compileAllowList(entries: readonly string[], keyPath = 'tls.allow'): AllowList {
  if (entries.length === 0) return allowAll;
  const cns = new Set<string>();
  const dnsExact = new Set<string>();
  const dnsOneLabel: string[] = []; // suffixes starting with "."
  const dnsAnyLabels: string[] = [];
  const uriExact = new Set<string>();
  const uriGlobs: string[][] = [];
  entries.forEach((entry, i) => {
    const where = `${keyPath}[${i}]`;
    const eq = entry.indexOf('=');
    const kind = eq < 0 ? '' : entry.slice(0, eq).trim().toUpperCase();
    const value = entry.slice(eq + 1);
    if (value === '') throw new ConfigError(where, `allow entry "${entry}" must look like CN=..., DNS=... or URI=...`);
    if (kind === 'CN') {
      cns.add(value);
    } else if (kind === 'DNS') {
      const name = normaliseDns(value);
      const wildcard = name.startsWith('**.') ? 2 : name.startsWith('*.') ? 1 : 0;
      const suffix = wildcard === 2 ? name.slice(2) : wildcard === 1 ? name.slice(1) : name;
      if (suffix.includes('*') || suffix === '.' || suffix.startsWith('..')) {
        throw new ConfigError(where, `allow entry "${entry}": a DNS wildcard must be the whole left-most label ("*.example.com" or "**.example.com")`);
      }
      if (wildcard === 2) dnsAnyLabels.push(suffix);
      else if (wildcard === 1) dnsOneLabel.push(suffix);
      else dnsExact.add(name);
    } else if (kind === 'URI') {
      if (value.includes('*')) uriGlobs.push(value.split('*'));
      else uriExact.add(value);
    } else {
      throw new ConfigError(where, `allow entry "${entry}": unknown kind "${kind}" (use CN=, DNS= or URI=)`);
    }
  });
  const checkDns = dnsExact.size + dnsOneLabel.length + dnsAnyLabels.length > 0;
  const checkUri = uriExact.size + uriGlobs.length > 0;

  const dnsAllowed = (raw: string): boolean => {
    const name = normaliseDns(raw);
    if (dnsExact.has(name)) return true;
    for (const suffix of dnsOneLabel) {
      if (name.length > suffix.length && name.endsWith(suffix) && name.lastIndexOf('.', name.length - suffix.length - 1) < 0) return true;
    }
    for (const suffix of dnsAnyLabels) {
      if (name.length > suffix.length && name.endsWith(suffix) && !name.startsWith('.')) return true;
    }
    return false;
  };
  const uriAllowed = (uri: string): boolean => {
    if (uriExact.has(uri)) return true;
    for (const parts of uriGlobs) if (globMatch(parts, uri)) return true;
    return false;
  };
  return (id) => {
    if (id.cn !== null && cns.has(id.cn)) return true;
    if (checkDns) for (const name of id.dns) if (dnsAllowed(name)) return true;
    if (checkUri) for (const uri of id.uris) if (uriAllowed(uri)) return true;
    return false;
  };
}

// Characters a header value must not carry raw, or that a URI/dNSName cannot legitimately
// contain: controls (header injection), space, DEL, non-ASCII, and the quoting characters.
const SAN_UNSAFE = /[\x00-\x20\x7f-\uffff"\\]/g;
// XFCC's own delimiters: a value containing them must be quoted (Envoy's XFCC docs).
const XFCC_DELIMS = /[,;=]/;
const QUOTED_PAIR = /["\\]/g;

function percentEncode(ch: string): string {
  const code = ch.charCodeAt(0);
  // SAN strings are read as latin1, one byte per character: %XX restores the original byte.
  if (code <= 0xff) return `%${code < 16 ? '0' : ''}${code.toString(16).toUpperCase()}`;
  let out = '';
  for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase()}`;
  return out;
}

function sanValue(raw: string): string {
  // RFC 3986 has no raw controls, space, '"' or '\' in a URI: the percent-encoded form is the
  // only well-formed spelling, and it keeps a hostile SAN from breaking out of the header.
  const value = raw.replace(SAN_UNSAFE, percentEncode);
  return value === '' || XFCC_DELIMS.test(value) ? `"${value}"` : value;
}

/**
 * Envoy's XFCC element: `Hash=<sha256>;Subject="<RFC 4514>";URI=<san>;…;DNS=<san>;…` (one pair
 * per SAN, Envoy's order). Subject is always quoted, as Envoy does; inside quotes '"' and '\'
 * are written as RFC 9110 §5.6.4 quoted-pairs so the value reads back exactly. Envoy instead
 * copies the subject's own RFC 4514 backslashes unescaped, so the two differ only for subjects
 * that needed RFC 4514 escaping. SANs with `,;=` are quoted.
 */
export function formatXfcc(id: ClientIdentity): string {
  let out = `Hash=${id.sha256};Subject="${id.subject.replace(QUOTED_PAIR, '\\$&')}"`;
  for (const uri of id.uris) out += `;URI=${sanValue(uri)}`;
  for (const dns of id.dns) out += `;DNS=${sanValue(dns)}`;
  return out;
}

/**
 * Parses an XFCC header into its elements (one per proxy hop, split at unquoted ","), each a
 * list of [key, value] pairs in order. Throws on anything formatXfcc would not produce.
 */
export function parseXfcc(header: string): Array<Array<[string, string]>> {
  const elements: Array<Array<[string, string]>> = [];
  let pairs: Array<[string, string]> = [];
  const n = header.length;
  let i = 0;
  for (;;) {
    const eq = header.indexOf('=', i);
    const key = eq < 0 ? '' : header.slice(i, eq);
    if (!/^[A-Za-z]+$/.test(key)) throw new Error(`XFCC: bad key at ${i}`);
    i = eq + 1;
    let value = '';
    if (header[i] === '"') {
      for (i++; ; i++) {
        if (i >= n) throw new Error('XFCC: unterminated quoted value');
        const c = header[i] as string;
        if (c === '"') break;
        if (c === '\\') {
          i++;
          if (i >= n) throw new Error('XFCC: dangling escape');
        }
        value += header[i] as string;
      }
      i++;
    } else {
      const start = i;
      while (i < n && header[i] !== ';' && header[i] !== ',') {
        if (header[i] === '"' || header[i] === '\\') throw new Error(`XFCC: unquoted special character at ${i}`);
        i++;
      }
      value = header.slice(start, i);
    }
    pairs.push([key, value]);
    if (i >= n) break;
    if (header[i] === ',') {
      elements.push(pairs);
      pairs = [];
    } else if (header[i] !== ';') {
      throw new Error(`XFCC: expected ";" or "," at ${i}`);
    }
    i++;
  }
  elements.push(pairs);
  return elements;
}
