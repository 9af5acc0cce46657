// Header rules shared by both directions: hop-by-hop removal (RFC 9110 §7.6.1), the
// X-Forwarded-* family, the request id, and XFCC stripping. Headers are [name, value]
// string pairs in arrival order; names keep the case the peer sent.
import { randomFillSync } from 'node:crypto';

export type HeaderList = string[]; // flat: name0, value0, name1, value1, ...

/** Always hop-by-hop (RFC 9110 §7.6.1), plus the de-facto Proxy-* family and Keep-Alive. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate']);

export function isHopByHop(lowerName: string): boolean {
  return HOP_BY_HOP.has(lowerName) || lowerName.startsWith('proxy-');
}

/** Tokens of every Connection header ("close, X-Foo" -> ["close", "x-foo"]). */
export function connectionTokens(values: string[]): Set<string> {
  const out = new Set<string>();
  for (const v of values) {
    for (const t of v.split(',')) {
      const tok = t.trim().toLowerCase();
      if (tok) out.add(tok);
    }
  }
  return out;
}

// A valid client X-Request-Id: 1-128 of A-Za-z0-9._:- (PRODUCT.md). Anything else could
// inject into logs or downstream systems, so it is replaced, not sanitised.
const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export function isValidRequestId(v: string): boolean {
  return REQUEST_ID_RE.test(v);
}

// Request ids are random (version 4) UUIDs, as crypto.randomUUID() makes them, but written
// into a reused buffer and read out as one flat string: randomUUID() builds each id from ~20
// concatenated pieces, ~590 bytes of garbage per request (bench/tools/alloc.sh), this 56.
// The random bytes come from the same CSPRNG, 256 ids' worth per refill as randomUUID caches.
const UUID_BATCH = 256;
const uuidRandom = Buffer.alloc(16 * UUID_BATCH);
let uuidNext = UUID_BATCH;
const uuidText = Buffer.alloc(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');

export function newRequestId(): string {
  if (uuidNext === UUID_BATCH) {
    randomFillSync(uuidRandom);
    uuidNext = 0;
  }
  const r = uuidRandom;
  const at = 16 * uuidNext++;
  const out = uuidText;
  let o = 0;
  for (let i = 0; i < 16; i++) {
    // RFC 9562 §5.4: version 4 in byte 6's high nibble, variant 10 in byte 8's two high bits
    const b = i === 6 ? (r[at + i]! & 0x0f) | 0x40 : i === 8 ? (r[at + i]! & 0x3f) | 0x80 : r[at + i]!;
    if (i === 4 || i === 6 || i === 8 || i === 10) out[o++] = 0x2d; // '-'
    out[o++] = HEX[b >> 4]!;
    out[o++] = HEX[b & 15]!;
  }
  return out.toString('latin1', 0, 36);
}

/** "::ffff:127.0.0.1" -> "127.0.0.1": the form X-Forwarded-For and the request log use. */
export function clientAddress(remote: string | undefined): string {
  if (!remote) return '';
  return remote.startsWith('::ffff:') ? remote.slice(7) : remote;
}

/**
 * The value without trailing SP/HTAB. RFC 9112 §5.1: OWS around a field value is not part of
 * it; llhttp drops the leading OWS but hands over the trailing one, and "localhost " must not
 * route differently from the "localhost" every origin reads (found by the differential fuzzer).
 */
export function trimTrailingOws(v: string): string {
  let end = v.length;
  while (end > 0) {
    const c = v.charCodeAt(end - 1);
    if (c !== 0x20 && c !== 0x09) break;
    end--;
  }
  return end === v.length ? v : v.slice(0, end);
}

/**
 * A Content-Length value in canonical form: leading zeros dropped ("010" is ten, and no peer
 * may read it as octal: HTTP Garden server bug 32), as `/^0+(?=\d)/` would, without a regex.
 */
export function canonicalDigits(v: string): string {
  let i = 0;
  while (i + 1 < v.length && v.charCodeAt(i) === 0x30 && isDigit(v.charCodeAt(i + 1))) i++;
  return i === 0 ? v : v.slice(i);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * Builds a message head in a reused buffer and hands it out as one Buffer copied from it (from
 * Node's Buffer pool: one small view object on the JS heap). Concatenating the pieces made a
 * cons string per piece and a flat copy when the socket wrote the result, about twice the
 * head's size in garbage per head; one flat string was still the head's size (bench/tools/
 * alloc.sh). Pieces are written as latin1, one byte per UTF-16 unit, exactly what writing the
 * concatenated string with 'latin1' did. One instance per process: a head is built start to
 * finish without yielding.
 */
class HeadWriter {
  #buf = Buffer.allocUnsafe(16 * 1024);
  #len = 0;

  start(s: string): void {
    this.#len = 0;
    this.add(s);
  }

  add(s: string): void {
    const need = this.#len + s.length;
    if (need > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, 2 * this.#buf.length));
      this.#buf.copy(bigger, 0, 0, this.#len);
      this.#buf = bigger;
    }
    this.#len += this.#buf.write(s, this.#len, 'latin1');
  }

  /** name ": " value CRLF */
  field(name: string, value: string): void {
    this.add(name);
    this.add(': ');
    this.add(value);
    this.add('\r\n');
  }

  /** Raw bytes after the head (a small body sent in the same write). */
  addBytes(data: Buffer, start: number, end: number): void {
    const need = this.#len + (end - start);
    if (need > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, 2 * this.#buf.length));
      this.#buf.copy(bigger, 0, 0, this.#len);
      this.#buf = bigger;
    }
    this.#len += data.copy(this.#buf, this.#len, start, end);
  }

  /** Bytes written since start(). */
  get length(): number {
    return this.#len;
  }

  /** The head so far, copied out of the reused buffer (the socket may hold it a while). */
  take(): Buffer {
    const head = Buffer.allocUnsafe(this.#len);
    this.#buf.copy(head, 0, 0, this.#len);
    return head;
  }
}

export const headWriter = new HeadWriter();

/** Header value as sent on the wire: nothing here may contain CR or LF. */
export function assertSafeValue(v: string): boolean {
  return !/[\r\n\0]/.test(v);
}
