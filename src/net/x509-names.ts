// Just enough DER (X.690) to read what a client identity needs from a certificate: the
// subject's RDN sequence with each value's ASN.1 type and bytes, the serial, and the
// dNSName / URI subjectAltNames. node:crypto's X509Certificate only offers display strings
// (a multi-line subject that loses multi-valued RDNs, a SAN list with its own quoting since
// CVE-2021-44532), and the subject has to be printed byte-for-byte as OpenSSL/BoringSSL's
// X509_NAME_print_ex(XN_FLAG_RFC2253) prints it, because that is what Envoy puts in XFCC.

export interface NameAttribute {
  /** Dotted OID of the attribute type. */
  oid: string;
  /** ASN.1 universal tag of the value (12 UTF8String, 19 PrintableString, ...). */
  tag: number;
  /** Content octets of the value. */
  value: Buffer;
  /** The whole value TLV, for the "#hex" form of RFC 4514 §2.4. */
  der: Buffer;
}

export interface CertificateNames {
  /** Lowercase hex of the serial INTEGER's magnitude. */
  serial: string;
  /** RDNs in DER order (most general first); each RDN is a SET of attributes. */
  subject: NameAttribute[][];
  dns: string[];
  uris: string[];
}

interface Tlv {
  tag: number;
  offset: number;
  start: number;
  end: number;
}

const SEQUENCE = 0x30;
const SET = 0x31;
const INTEGER = 0x02;
const OID = 0x06;
const OCTET_STRING = 0x04;
const BOOLEAN = 0x01;
const EXPLICIT_0 = 0xa0;
const EXPLICIT_3 = 0xa3;
const SAN_DNS = 0x82; // GeneralName [2] IMPLICIT IA5String (RFC 5280 §4.2.1.6)
const SAN_URI = 0x86; // GeneralName [6] IMPLICIT IA5String
const SAN_OID = '2.5.29.17';

function readTlv(buf: Buffer, pos: number, limit: number): Tlv {
  if (pos + 2 > limit) throw new Error('truncated DER');
  const tag = buf[pos] as number;
  // Certificates only use low tag numbers; the multi-byte form would be a malformed input here.
  if ((tag & 0x1f) === 0x1f) throw new Error('unsupported DER tag');
  let len = buf[pos + 1] as number;
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    // Indefinite length (n = 0) is BER, never DER; more than 4 bytes cannot fit a certificate.
    if (n === 0 || n > 4 || start + n > limit) throw new Error('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] as number);
    start += n;
  }
  if (start + len > limit) throw new Error('truncated DER');
  return { tag, offset: pos, start, end: start + len };
}

function expectTlv(buf: Buffer, pos: number, limit: number, tag: number): Tlv {
  const tlv = readTlv(buf, pos, limit);
  if (tlv.tag !== tag) throw new Error(`unexpected DER tag 0x${tlv.tag.toString(16)} (wanted 0x${tag.toString(16)})`);
  return tlv;
}

function oidString(buf: Buffer, start: number, end: number): string {
  let out = '';
  let v = 0;
  for (let i = start; i < end; i++) {
    const b = buf[i] as number;
    v = v * 128 + (b & 0x7f);
    if (b & 0x80) continue;
    if (out === '') {
      const first = v < 80 ? Math.floor(v / 40) : 2;
      out = `${first}.${v - first * 40}`;
    } else {
      out += `.${v}`;
    }
    v = 0;
  }
  return out;
}

function readName(buf: Buffer, name: Tlv): NameAttribute[][] {
  const rdns: NameAttribute[][] = [];
  for (let p = name.start; p < name.end;) {
    const set = expectTlv(buf, p, name.end, SET);
    const rdn: NameAttribute[] = [];
    for (let q = set.start; q < set.end;) {
      const atv = expectTlv(buf, q, set.end, SEQUENCE);
      const type = expectTlv(buf, atv.start, atv.end, OID);
      const value = readTlv(buf, type.end, atv.end);
      rdn.push({
        oid: oidString(buf, type.start, type.end),
        tag: value.tag,
        value: buf.subarray(value.start, value.end),
        der: buf.subarray(value.offset, value.end),
      });
      q = atv.end;
    }
    rdns.push(rdn);
    p = set.end;
  }
  return rdns;
}

function readSan(buf: Buffer, octets: Tlv, dns: string[], uris: string[]): void {
  const names = expectTlv(buf, octets.start, octets.end, SEQUENCE);
  for (let p = names.start; p < names.end;) {
    const gn = readTlv(buf, p, names.end);
    // IA5String is 7-bit; latin1 keeps any stray high byte visible instead of turning it into U+FFFD.
    if (gn.tag === SAN_DNS) dns.push(buf.toString('latin1', gn.start, gn.end));
    else if (gn.tag === SAN_URI) uris.push(buf.toString('latin1', gn.start, gn.end));
    p = gn.end;
  }
}

function readExtensions(buf: Buffer, wrapper: Tlv, dns: string[], uris: string[]): void {
  const list = expectTlv(buf, wrapper.start, wrapper.end, SEQUENCE);
  for (let p = list.start; p < list.end;) {
    const ext = expectTlv(buf, p, list.end, SEQUENCE);
    const id = expectTlv(buf, ext.start, ext.end, OID);
    let next = readTlv(buf, id.end, ext.end);
    if (next.tag === BOOLEAN) next = readTlv(buf, next.end, ext.end);
    if (next.tag === OCTET_STRING && oidString(buf, id.start, id.end) === SAN_OID) readSan(buf, next, dns, uris);
    p = ext.end;
  }
}

/** Reads the subject, serial and DNS/URI SANs of a DER certificate (RFC 5280 §4.1). Throws on malformed DER. */
export function readCertificateNames(der: Uint8Array): CertificateNames {
  const buf = Buffer.from(der.buffer, der.byteOffset, der.byteLength);
  const cert = expectTlv(buf, 0, buf.length, SEQUENCE);
  const tbs = expectTlv(buf, cert.start, cert.end, SEQUENCE);
  let t = readTlv(buf, tbs.start, tbs.end);
  if (t.tag === EXPLICIT_0) t = readTlv(buf, t.end, tbs.end);
  if (t.tag !== INTEGER) throw new Error('certificate serial missing');
  let serialStart = t.start;
  // DER prepends 0x00 to keep a positive INTEGER positive; it is not part of the serial.
  if (buf[serialStart] === 0 && t.end - serialStart > 1) serialStart++;
  const serial = buf.toString('hex', serialStart, t.end);
  const signature = expectTlv(buf, t.end, tbs.end, SEQUENCE);
  const issuer = expectTlv(buf, signature.end, tbs.end, SEQUENCE);
  const validity = expectTlv(buf, issuer.end, tbs.end, SEQUENCE);
  const subjectTlv = expectTlv(buf, validity.end, tbs.end, SEQUENCE);
  const spki = expectTlv(buf, subjectTlv.end, tbs.end, SEQUENCE);
  const dns: string[] = [];
  const uris: string[] = [];
  for (let p = spki.end; p < tbs.end;) {
    const field = readTlv(buf, p, tbs.end);
    if (field.tag === EXPLICIT_3) readExtensions(buf, field, dns, uris);
    p = field.end;
  }
  return { serial, subject: readName(buf, subjectTlv), dns, uris };
}

// OpenSSL's short names (crypto/objects/objects.txt) for the attribute types seen in practice;
// anything else prints as its dotted OID with the value hex-dumped, as XN_FLAG_DUMP_UNKNOWN_FIELDS does.
const SHORT_NAMES: ReadonlyMap<string, string> = new Map([
  ['2.5.4.3', 'CN'], ['2.5.4.4', 'SN'], ['2.5.4.5', 'serialNumber'], ['2.5.4.6', 'C'],
  ['2.5.4.7', 'L'], ['2.5.4.8', 'ST'], ['2.5.4.9', 'street'], ['2.5.4.10', 'O'],
  ['2.5.4.11', 'OU'], ['2.5.4.12', 'title'], ['2.5.4.13', 'description'],
  ['2.5.4.15', 'businessCategory'], ['2.5.4.17', 'postalCode'], ['2.5.4.41', 'name'],
  ['2.5.4.42', 'GN'], ['2.5.4.43', 'initials'], ['2.5.4.44', 'generationQualifier'],
  ['2.5.4.46', 'dnQualifier'], ['2.5.4.65', 'pseudonym'], ['2.5.4.97', 'organizationIdentifier'],
  ['0.9.2342.19200300.100.1.1', 'UID'], ['0.9.2342.19200300.100.1.25', 'DC'],
  ['1.2.840.113549.1.9.1', 'emailAddress'],
  ['1.3.6.1.4.1.311.60.2.1.1', 'jurisdictionL'], ['1.3.6.1.4.1.311.60.2.1.2', 'jurisdictionST'],
  ['1.3.6.1.4.1.311.60.2.1.3', 'jurisdictionC'],
]);

/** The CN attribute type. */
export const OID_CN = '2.5.4.3';

/**
 * Decodes a directory string value to text, or null when the type is not a string type
 * OpenSSL knows (a_strex.c tag2nbyte) or the bytes don't fit it.
 */
export function attributeText(attr: NameAttribute): string | null {
  const v = attr.value;
  switch (attr.tag) {
    case 12: { // UTF8String
      const text = v.toString('utf8');
      return Buffer.from(text, 'utf8').equals(v) ? text : null; // invalid UTF-8 does not round-trip
    }
    case 18: case 19: case 20: case 22: case 23: case 24: case 26: // one byte per character
      return v.toString('latin1');
    case 30: { // BMPString: UTF-16BE
      if (v.length % 2 !== 0) return null;
      let s = '';
      for (let i = 0; i < v.length; i += 2) s += String.fromCharCode(v.readUInt16BE(i));
      return s;
    }
    case 28: { // UniversalString: UTF-32BE
      if (v.length % 4 !== 0) return null;
      let s = '';
      for (let i = 0; i < v.length; i += 4) {
        const cp = v.readUInt32BE(i);
        if (cp > 0x10ffff) return null;
        s += String.fromCodePoint(cp);
      }
      return s;
    }
    default:
      return null;
  }
}

const HEX = '0123456789ABCDEF';
// RFC 4514 §2.4 specials; '#' and ' ' only at the start, ' ' at the end.
const SPECIAL = new Set([0x22, 0x2b, 0x2c, 0x3b, 0x3c, 0x3e, 0x5c]);

function hexByte(b: number): string {
  return `\\${HEX[b >> 4]}${HEX[b & 15]}`;
}

/**
 * Escapes one attribute value as OpenSSL does with ASN1_STRFLGS_RFC2253: specials get a
 * backslash, control bytes and every byte of a non-ASCII UTF-8 sequence become \XX.
 * One deliberate difference: OpenSSL forgets the leading-'#' escape for a one-character value
 * (do_buf overwrites the "first" flag with "last"), which is not valid RFC 4514; we escape it.
 */
function escapeValue(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  let out = '';
  const last = bytes.length - 1;
  for (let i = 0; i <= last; i++) {
    const b = bytes[i] as number;
    if (b > 0x7e || b < 0x20) out += hexByte(b);
    else if (SPECIAL.has(b) || (i === 0 && (b === 0x23 || b === 0x20)) || (i === last && b === 0x20)) out += `\\${String.fromCharCode(b)}`;
    else out += String.fromCharCode(b);
  }
  return out;
}

/**
 * The RFC 4514 string of a name: RDNs in reverse DER order joined by ",", multi-valued RDN
 * members joined by "+" (also reversed, as XN_FLAG_DN_REV reverses the flat entry list).
 */
export function formatRfc4514(rdns: NameAttribute[][]): string {
  const parts: string[] = [];
  for (let i = rdns.length - 1; i >= 0; i--) {
    const rdn = rdns[i] as NameAttribute[];
    const members: string[] = [];
    for (let j = rdn.length - 1; j >= 0; j--) {
      const attr = rdn[j] as NameAttribute;
      const name = SHORT_NAMES.get(attr.oid);
      const text = name === undefined ? null : attributeText(attr);
      members.push(text === null ? `${name ?? attr.oid}=#${attr.der.toString('hex').toUpperCase()}` : `${name}=${escapeValue(text)}`);
    }
    parts.push(members.join('+'));
  }
  return parts.join(',');
}
