// The request parsing path of a downstream connection (src/http/downstream.ts), without sockets:
// HttpParser (llhttp wasm) + RequestHead (limits, Host, version, CONNECT, transfer codings) +
// normaliseTarget + requestParseError, paused at each message's end and resumed as downstream
// does after the response. What it returns is what the proxy forwards: the end-to-end fuzzer
// holds the real proxy to it, so this model cannot drift from downstream.ts unnoticed.
import type { ListenerLimits } from '../../src/config/types.ts';
import { ProxyError } from '../../src/errors.ts';
import { ERR, HttpParser, TYPE_REQUEST, type ParserHandler } from '../../src/http/llhttp.ts';
import { requestParseError } from '../../src/http/parse-error.ts';
import { normaliseTarget } from '../../src/http/request-filters.ts';
import { RequestHead } from '../../src/http/request-head.ts';

export interface ParsedRequest {
  method: string;
  /** As sent in the request line. */
  target: string;
  /** What the proxy sends upstream (origin form), and the Host it routes on. */
  forwardTarget: string;
  host: string;
  versionMinor: number;
  /** [name, value] as the proxy reads them (trailing OWS gone). */
  headers: Array<[string, string]>;
  body: Buffer;
  chunked: boolean;
  keepAlive: boolean;
  upgrade: boolean;
}

export type ParseEnd =
  /** The error that made the proxy answer and close. `inBody`: found after the head (head may be forwarded). */
  | { kind: 'error'; error: ProxyError; inBody: boolean }
  /** A message after which the connection closes (Connection: close, HTTP/1.0, Upgrade). */
  | { kind: 'last' }
  /** Every byte parsed; `pending`: a message is started but not complete ('head' or 'body'). */
  | { kind: 'open'; pending: 'none' | 'head' | 'body' };

export interface ParseOutcome {
  messages: ParsedRequest[];
  end: ParseEnd;
}

export const DEFAULT_LIMITS: ListenerLimits = { maxHeaderSize: 64 * 1024, maxHeaders: 100, maxUriLength: 8 * 1024, headerTimeoutMs: 10_000, idleTimeoutMs: 60_000 };

/** Error kinds a request can end in: anything else is a bug. */
export const REQUEST_ERROR_KINDS = new Set(['BAD_REQUEST', 'AMBIGUOUS_FRAMING', 'BAD_METHOD', 'URI_TOO_LONG', 'HEADERS_TOO_LARGE', 'TOO_MANY_HEADERS', 'VERSION_NOT_SUPPORTED', 'TRANSFER_CODING_NOT_IMPLEMENTED']);

class Model implements ParserHandler {
  readonly head: RequestHead;
  readonly parser: HttpParser;
  messages: ParsedRequest[] = [];
  error: ProxyError | null = null;
  current: ParsedRequest | null = null;
  body: Buffer[] = [];
  inBody = false;
  inTrailers = false;
  started = false;

  constructor(limits: ListenerLimits) {
    this.head = new RequestHead(limits);
    this.parser = new HttpParser(TYPE_REQUEST, this);
  }

  #check(err: ProxyError | null): number {
    if (err === null) return 0;
    this.error = err;
    return -1;
  }

  onMessageBegin(): number {
    this.head.reset();
    this.inBody = false;
    this.inTrailers = false;
    this.error = null;
    this.current = null;
    this.body = [];
    this.started = true;
    return 0;
  }

  onUrl(data: Buffer, start: number, end: number): number {
    return this.#check(this.head.onUrl(data, start, end));
  }

  onStatus(): number {
    return 0;
  }

  onHeaderField(data: Buffer, start: number, end: number): number {
    if (this.inBody && !this.inTrailers) {
      this.inTrailers = true;
      this.head.startTrailers();
    }
    return this.#check(this.head.onHeaderField(data, start, end));
  }

  onHeaderValue(data: Buffer, start: number, end: number): number {
    return this.#check(this.head.onHeaderValue(data, start, end));
  }

  onHeadersComplete(_status: number, upgrade: boolean, keepAlive: boolean): number {
    const p = this.parser;
    const h = this.head;
    const err = h.complete(p.method, p.httpMajor, p.httpMinor, keepAlive, upgrade);
    if (err !== null) return this.#check(err);
    this.inBody = true;
    const form = normaliseTarget(h);
    if (form instanceof ProxyError) return this.#check(form);
    const headers: Array<[string, string]> = [];
    for (let i = 0; i < h.headers.length; i += 2) headers.push([h.headers[i]!, h.headers[i + 1]!]);
    this.current = {
      method: h.method, target: h.target, forwardTarget: form.target, host: form.host, versionMinor: h.versionMinor,
      headers, body: Buffer.alloc(0), chunked: h.chunked, keepAlive, upgrade,
    };
    return 0;
  }

  onBody(data: Buffer, start: number, end: number): number {
    this.body.push(Buffer.from(data.subarray(start, end)));
    return 0;
  }

  onMessageComplete(): number {
    const err = this.head.endOfMessage();
    if (err !== null) return this.#check(err);
    const m = this.current!;
    m.body = Buffer.concat(this.body);
    this.messages.push(m);
    this.current = null;
    this.started = false;
    return ERR.PAUSED;
  }
}

/** Parse `chunks` as one client connection would deliver them. */
export function parseLikeDownstream(chunks: readonly Buffer[], limits: ListenerLimits = DEFAULT_LIMITS): ParseOutcome {
  const m = new Model(limits);
  try {
    for (const chunk of chunks) {
      let data = chunk;
      while (data.length > 0) {
        const ret = m.parser.execute(data);
        if (ret === ERR.OK) break;
        if (ret === ERR.PAUSED || ret === ERR.PAUSED_UPGRADE) {
          const last = m.messages.at(-1)!;
          // downstream: clientKeepAlive = keepAlive && !upgrade; after PAUSED_UPGRADE nothing more is parsed
          if (ret === ERR.PAUSED_UPGRADE || !last.keepAlive || last.upgrade) return { messages: m.messages, end: { kind: 'last' } };
          m.parser.resume();
          data = data.subarray(m.parser.stoppedAt);
          continue;
        }
        const error = m.error ?? requestParseError(m.parser, ret);
        return { messages: m.messages, end: { kind: 'error', error, inBody: m.current !== null } };
      }
    }
    return { messages: m.messages, end: { kind: 'open', pending: !m.started ? 'none' : m.current !== null ? 'body' : 'head' } };
  } finally {
    m.parser.destroy();
  }
}

/** Split `bytes` at the given offsets (sorted, deduplicated, in range). */
export function splitAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(bytes.subarray(at, p));
    at = p;
  }
  out.push(bytes.subarray(at));
  return out;
}

/** A comparable summary (errors by kind only: the reason text may name a position). */
export function summary(o: ParseOutcome): unknown {
  return {
    messages: o.messages.map((x) => ({ ...x, body: x.body.toString('latin1') })),
    end: o.end.kind === 'error' ? { kind: 'error', code: o.end.error.code, inBody: o.end.inBody } : o.end,
  };
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** What makes a parsed message one the proxy may forward; returns the first problem or null. */
export function invalidMessage(x: ParsedRequest): string | null {
  if (!TOKEN.test(x.method)) return `method ${JSON.stringify(x.method)} is not a token`;
  if (x.method === 'CONNECT') return 'CONNECT accepted';
  if (x.target === '' || /[\x00-\x20\x7f]/.test(x.target)) return `target ${JSON.stringify(x.target)}`;
  if (x.versionMinor !== 0 && x.versionMinor !== 1) return `version 1.${x.versionMinor}`;
  let cl = 0;
  let te = 0;
  let hosts = 0;
  for (const [n, v] of x.headers) {
    if (!TOKEN.test(n)) return `header name ${JSON.stringify(n)}`;
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(v)) return `control byte in the value of ${n}`;
    if (/^[ \t]|[ \t]$/.test(v)) return `whitespace around the value of ${n}`;
    const l = n.toLowerCase();
    if (l === 'content-length') {
      cl++;
      if (!/^\d+$/.test(v)) return `Content-Length ${JSON.stringify(v)}`;
    } else if (l === 'transfer-encoding') {
      te++;
      if (v.toLowerCase() !== 'chunked') return `Transfer-Encoding ${JSON.stringify(v)}`;
    } else if (l === 'host') hosts++;
  }
  if (cl > 1 || te > 1 || (cl > 0 && te > 0)) return `framing: ${cl} Content-Length, ${te} Transfer-Encoding`;
  if (hosts > 1 || (hosts === 0 && x.versionMinor === 1)) return `${hosts} Host headers`;
  if (cl === 1 && !x.chunked) {
    const v = x.headers.find(([n]) => n.toLowerCase() === 'content-length')![1];
    if (BigInt(v) !== BigInt(x.body.length)) return `body of ${x.body.length} bytes for Content-Length ${v}`;
  }
  return null;
}
