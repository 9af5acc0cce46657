// The upstream's response head, collected from llhttp's callbacks, checked, and rewritten
// into the head the client gets: hop-by-hop fields and what Connection names removed, our
// X-Request-Id, the framing the client side needs (RFC 9112 §6), Connection: close when the
// client connection ends with this response. Each client connection owns one (its arrays are
// reused, not made per request) and lends it to the exchange in progress (exchange.ts), which
// drives it and turns the problems reported here into 502s.
import { canonicalDigits, connectionTokens, headWriter, isHopByHop, trimTrailingOws } from './headers.ts';

/**
 * How the response body reaches the client: as the upstream framed it by Content-Length,
 * re-framed as chunks, delimited by closing the connection (HTTP/1.0 clients), or none.
 */
export type ResponseMode = 'length' | 'chunked' | 'close' | 'none';

/** What of the request decides the response's framing. */
export interface ResponseFor {
  readonly id: string;
  readonly method: string;
  readonly clientMinor: number;
  readonly clientKeepAlive: boolean;
}

const CRLF = '\r\n';

/** Anything but HTAB, SP, VCHAR and obs-text: what `/[^\t\x20-\x7e\x80-\xff]/` matches. */
function hasControlByte(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0x09 && (c < 0x20 || c === 0x7f || c > 0xff)) return true;
  }
  return false;
}

export class ResponseHead {
  reason = '';
  // The fields as received: names, lower-cased names and values (trailing OWS removed), the
  // first #count of each. Reused from message to message: no arrays per response.
  readonly #names: string[] = [];
  readonly #lower: string[] = [];
  readonly #values: string[] = [];
  #count = 0;
  #field = '';
  #value = '';
  #inValue = false;
  #bytes = 0;
  /** Set by final(). */
  mode: ResponseMode = 'none';
  closeClient = false;
  /** The Content-Length body's size when it is a safe integer, else -1 (set by final()). */
  bodyLength = -1;

  /** A new message (a final response after 1xx ones too, or the next exchange's). */
  reset(): void {
    this.mode = 'none';
    this.closeClient = false;
    this.bodyLength = -1;
    this.reason = '';
    this.#count = 0;
    this.#field = '';
    this.#value = '';
    this.#inValue = false;
    this.#bytes = 0;
  }

  /** Counts `n` more bytes of head (trailers too); false once past `limit`. */
  grow(n: number, limit: number): boolean {
    this.#bytes += n;
    return this.#bytes <= limit;
  }

  addReason(data: Buffer, start: number, end: number): void {
    this.reason += data.toString('latin1', start, end);
  }

  addName(data: Buffer, start: number, end: number): void {
    if (this.#inValue) this.#push();
    this.#field += data.toString('latin1', start, end);
  }

  addValue(data: Buffer, start: number, end: number): void {
    this.#inValue = true;
    this.#value += data.toString('latin1', start, end);
  }

  /** The head is complete: the last field goes in. */
  end(): void {
    if (this.#inValue || this.#field !== '') this.#push();
  }

  #push(): void {
    const i = this.#count++;
    this.#names[i] = this.#field;
    this.#lower[i] = this.#field.toLowerCase();
    // RFC 9112 §5.1: trailing OWS is not part of the value (llhttp leaves it in)
    this.#values[i] = trimTrailingOws(this.#value);
    this.#field = '';
    this.#value = '';
    this.#inValue = false;
  }

  /**
   * Why this head can't be forwarded, or null. RFC 9112 §4: reason-phrase = *( HTAB / SP /
   * VCHAR / obs-text ); llhttp lets a NUL or other control byte through, and the reason is
   * written to the client as is (found by the response-side fuzzer). RFC 9112 §6.1: one
   * Transfer-Encoding, exactly "chunked", or none; llhttp frames "chunked, chunked" or
   * "gzip, chunked" as chunked and "gzip" as close-delimited, and forwarding any of them
   * re-framed as plain chunked would hand the client a body that differs from what the
   * upstream meant (we implement no other transfer coding; HAProxy answers these with 502 too).
   */
  problem(final: boolean): string | null {
    if (final) {
      let codings = 0;
      for (let i = 0; i < this.#count; i++) {
        if (this.#lower[i] !== 'transfer-encoding') continue;
        if (++codings > 1 || this.#values[i]!.toLowerCase() !== 'chunked') return 'upstream response has a transfer coding other than "chunked"';
      }
    }
    if (hasControlByte(this.reason)) return 'upstream status line has a control byte in its reason phrase';
    return null;
  }

  /** A 1xx as an HTTP/1.1 client gets it: end-to-end fields only. */
  interim(status: number): Buffer {
    const w = headWriter;
    this.#statusLine(status);
    for (let i = 0; i < this.#count; i++) {
      if (!isHopByHop(this.#lower[i]!)) w.field(this.#names[i]!, this.#values[i]!);
    }
    w.add(CRLF);
    return w.take();
  }

  /** The value of the head's one Upgrade field; null when there is none or more than one. */
  upgradeValue(): string | null {
    let value: string | null = null;
    for (let i = 0; i < this.#count; i++) {
      if (this.#lower[i] !== 'upgrade') continue;
      if (value !== null) return null;
      value = this.#values[i]!;
    }
    return value;
  }

  /**
   * The 101 of a protocol switch we asked for (a WebSocket handshake), as the client gets it:
   * end-to-end fields, our X-Request-Id, and the switch itself (Upgrade and Connection are
   * hop-by-hop, so they are written anew rather than passed on).
   */
  switching(id: string, protocol: string): Buffer {
    const w = headWriter;
    const named = this.#connectionNamed();
    this.#statusLine(101);
    for (let i = 0; i < this.#count; i++) {
      const lower = this.#lower[i]!;
      if (isHopByHop(lower) || lower === 'x-request-id' || (named !== null && named.has(lower))) continue;
      w.field(this.#names[i]!, this.#values[i]!);
    }
    w.field('x-request-id', id);
    w.field('upgrade', protocol);
    w.add('connection: upgrade\r\n');
    w.add(CRLF);
    return w.take();
  }

  /** The tokens of the head's Connection fields, or null when it has none. */
  #connectionNamed(): Set<string> | null {
    let connection: string[] | null = null;
    for (let i = 0; i < this.#count; i++) if (this.#lower[i] === 'connection') (connection ??= []).push(this.#values[i]!);
    return connection !== null ? connectionTokens(connection) : null;
  }

  #statusLine(status: number): void {
    const w = headWriter;
    w.start('HTTP/1.1 ');
    w.add(String(status));
    w.add(' ');
    w.add(this.reason);
    w.add(CRLF);
  }

  /** The final head for the client; sets mode, closeClient and bodyLength. */
  final(status: number, req: ResponseFor, draining: boolean): Buffer {
    this.build(status, req, draining);
    return headWriter.take();
  }

  /**
   * final() left in headWriter, for the caller to add body bytes behind it (addBytes) and
   * take() head and body as one Buffer. Nothing else may use headWriter in between.
   */
  build(status: number, req: ResponseFor, draining: boolean): void {
    const n = this.#count;
    const lowers = this.#lower;
    const values = this.#values;
    let connection: string[] | null = null;
    let hasLength = false;
    let length = 0;
    let chunked = false;
    for (let i = 0; i < n; i++) {
      const lower = lowers[i]!;
      if (lower === 'connection') (connection ??= []).push(values[i]!);
      else if (lower === 'content-length') {
        hasLength = true;
        length = Number(values[i]!); // one value, digits only: llhttp refused anything else
      } else if (lower === 'transfer-encoding') chunked = true;
    }
    const noBody = req.method === 'HEAD' || status === 204 || status === 304;
    const http10 = req.clientMinor === 0;
    let mode: ResponseMode;
    if (noBody) mode = 'none';
    else if (chunked) mode = http10 ? 'close' : 'chunked';
    else if (hasLength) mode = 'length';
    else mode = http10 ? 'close' : 'chunked'; // close-delimited upstream: re-framed so the client connection survives
    this.mode = mode;
    // past 2^53 a count in a double would be wrong: llhttp keeps counting such a body
    this.bodyLength = mode === 'length' && Number.isSafeInteger(length) ? length : -1;
    this.closeClient = !req.clientKeepAlive || mode === 'close' || draining;
    // RFC 9110 §7.6.1: fields the upstream's Connection names are hop-by-hop too
    const named = connection !== null ? connectionTokens(connection) : null;

    const w = headWriter;
    this.#statusLine(status);
    for (let i = 0; i < n; i++) {
      const lower = lowers[i]!;
      if (isHopByHop(lower) || lower === 'x-request-id' || (named !== null && named.has(lower))) continue;
      // with HEAD, Content-Length describes the GET body: kept (RFC 9110 §9.3.2), in canonical
      // digits ("005" is 5 to llhttp; a client reading it as octal must not see it)
      if (lower === 'content-length') w.field(this.#names[i]!, canonicalDigits(values[i]!));
      else w.field(this.#names[i]!, values[i]!);
    }
    w.field('x-request-id', req.id);
    if (mode === 'chunked') w.add('transfer-encoding: chunked\r\n');
    if (this.closeClient) w.add('connection: close\r\n');
    else if (http10) w.add('connection: keep-alive\r\n');
    w.add(CRLF);
  }
}
