// Collects a request head from llhttp callbacks and enforces the limits llhttp does not:
// head size and header count (RFC 9112 §2.3 leaves them to the server; PRODUCT.md: 431),
// target length (414), version (505), Host (RFC 9112 §3.2: exactly one, else 400).
import type { ListenerLimits } from '../config/types.ts';
import { ProxyError } from '../errors.ts';
import { trimTrailingOws, type HeaderList } from './headers.ts';

// Bytes a header line costs beyond its name and value: ": " and CRLF.
const LINE_OVERHEAD = 4;

export class RequestHead {
  method = '';
  target = '';
  versionMinor = 1;
  headers: HeaderList = [];
  host = '';
  contentLength = -1;
  chunked = false;
  keepAlive = true;
  upgrade = false;
  expectContinue = false;
  /** Lower-cased header names in `headers`, parallel to the name slots. */
  lower: string[] = [];
  // `headers` and `lower` are reused from request to request (no arrays per request): #push
  // overwrites them from the start, and complete() cuts them to this request's #fields.
  #fields = 0;

  #limits: ListenerLimits;
  #bytes = 0;
  #field = '';
  #value = '';
  #inValue = false;
  #count = 0;
  #trailers = false;
  #trailerFraming = false;

  constructor(limits: ListenerLimits) {
    this.#limits = limits;
  }

  /** Bytes of the head as counted against max_header_size (request line + fields). */
  get byteCount(): number {
    return this.#bytes;
  }

  /** Start a new message (keep-alive): everything back to empty. */
  reset(): void {
    this.method = '';
    this.target = '';
    this.versionMinor = 1;
    this.#fields = 0;
    this.host = '';
    this.contentLength = -1;
    this.chunked = false;
    this.keepAlive = true;
    this.upgrade = false;
    this.expectContinue = false;
    this.#bytes = 0;
    this.#field = '';
    this.#value = '';
    this.#inValue = false;
    this.#count = 0;
    this.#trailers = false;
    this.#trailerFraming = false;
  }

  #grow(n: number): ProxyError | null {
    this.#bytes += n;
    if (this.#bytes > this.#limits.maxHeaderSize) {
      return new ProxyError('HEADERS_TOO_LARGE', `request head larger than ${this.#limits.maxHeaderSize} bytes`);
    }
    return null;
  }

  onUrl(data: Buffer, start: number, end: number): ProxyError | null {
    this.target += data.toString('latin1', start, end);
    if (this.target.length > this.#limits.maxUriLength) {
      return new ProxyError('URI_TOO_LONG', `request target longer than ${this.#limits.maxUriLength} bytes`);
    }
    // the request line: method, two spaces, "HTTP/1.1", CRLF
    return this.#grow(end - start + (this.#bytes === 0 ? 16 : 0));
  }

  onHeaderField(data: Buffer, start: number, end: number): ProxyError | null {
    if (this.#inValue) {
      this.#push();
    }
    if (this.#field === '') {
      this.#count++;
      if (this.#count > this.#limits.maxHeaders) {
        return new ProxyError('TOO_MANY_HEADERS', `more than ${this.#limits.maxHeaders} header fields`);
      }
    }
    this.#field += data.toString('latin1', start, end);
    return this.#grow(end - start + LINE_OVERHEAD);
  }

  onHeaderValue(data: Buffer, start: number, end: number): ProxyError | null {
    this.#inValue = true;
    this.#value += data.toString('latin1', start, end);
    return this.#grow(end - start);
  }

  /** Trailer fields arrive through the same callbacks after the body: counted, then dropped. */
  startTrailers(): void {
    this.#trailers = true;
    this.#field = '';
    this.#value = '';
    this.#inValue = false;
  }

  #push(): void {
    if (!this.#trailers && this.#field !== '') {
      const i = this.#fields++;
      this.headers[2 * i] = this.#field;
      this.headers[2 * i + 1] = trimTrailingOws(this.#value);
      this.lower[i] = this.#field.toLowerCase();
    } else if (this.#trailers) {
      const name = this.#field.toLowerCase();
      if (name === 'transfer-encoding' || name === 'content-length') this.#trailerFraming = true;
    }
    this.#field = '';
    this.#value = '';
    this.#inValue = false;
  }

  /**
   * Called from onMessageComplete. RFC 9110 §6.5.1: framing fields are not allowed in trailers.
   * llhttp refuses most, but the wasm build in undici takes an empty `Transfer-Encoding:` trailer
   * that Node's native llhttp refuses (found by the differential fuzzer).
   */
  endOfMessage(): ProxyError | null {
    if (this.#trailers && (this.#inValue || this.#field !== '')) this.#push();
    return this.#trailerFraming ? new ProxyError('AMBIGUOUS_FRAMING', 'a framing field in the trailer section') : null;
  }

  /** Called from onHeadersComplete: validates what llhttp leaves to us. */
  complete(method: string, major: number, minor: number, keepAlive: boolean, upgrade: boolean): ProxyError | null {
    if (this.#inValue || this.#field !== '') this.#push();
    this.headers.length = 2 * this.#fields;
    this.lower.length = this.#fields;
    if (major !== 1 || (minor !== 0 && minor !== 1)) {
      return new ProxyError('VERSION_NOT_SUPPORTED', `HTTP/${major}.${minor} is not supported`);
    }
    this.method = method;
    this.versionMinor = minor;
    this.keepAlive = keepAlive;
    this.upgrade = upgrade;
    let hosts = 0;
    let codings: string | null = null;
    const { headers, lower } = this;
    for (let i = 0; i < lower.length; i++) {
      const name = lower[i];
      if (name === 'host') {
        hosts++;
        this.host = headers[2 * i + 1] ?? '';
      } else if (name === 'transfer-encoding') {
        codings = codings === null ? (headers[2 * i + 1] ?? '') : `${codings}, ${headers[2 * i + 1]}`;
      } else if (name === 'content-length') {
        this.contentLength = Number(headers[2 * i + 1]);
      } else if (name === 'expect' && (headers[2 * i + 1] ?? '').toLowerCase() === '100-continue') {
        this.expectContinue = true;
      }
    }
    if (codings !== null) {
      // Several field lines are one list (RFC 9110 §5.3). llhttp refuses a request whose codings
      // don't end in chunked only after this callback (RFC 9112 §6.3 rule 4: 400). One that does
      // but has another coding too ("gzip, chunked") is one we don't implement, and re-framing it
      // as plain chunked would hand the origin gzip bytes as the content: 501 (RFC 9112 §6.1).
      const te = codings.toLowerCase();
      if (te !== 'chunked') {
        return te.slice(te.lastIndexOf(',') + 1).replace(/^[ \t]+|[ \t]+$/g, '') === 'chunked'
          ? new ProxyError('TRANSFER_CODING_NOT_IMPLEMENTED', 'a transfer coding other than chunked is not implemented')
          : new ProxyError('AMBIGUOUS_FRAMING', 'Transfer-Encoding does not end in chunked');
      }
      this.chunked = true;
    }
    // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request without Host or with
    // more than one (request-smuggling vector: two hosts, two routing decisions).
    if (hosts > 1 || (hosts === 0 && minor === 1)) {
      return new ProxyError('BAD_REQUEST', hosts > 1 ? 'more than one Host header' : 'missing Host header');
    }
    if (method === 'CONNECT') {
      return new ProxyError('BAD_METHOD', 'CONNECT is not supported by a reverse proxy');
    }
    return null;
  }
}
