// The proxy's own output grammar, parsed strictly: what it sends upstream and what it answers
// downstream must be a canonical HTTP/1.1 message, whatever the client or the upstream sent.
// Stricter than any real parser on purpose (RFC 9112 §2-§7 with no optional leniency):
//   start line, then `name: value` CRLF lines (token name, one SP, a value with no CTL but
//   HTAB and no leading or trailing whitespace), then CRLF; framing by exactly one
//   Content-Length of digits, or one `transfer-encoding: chunked` with lowercase-hex chunk
//   sizes without leading zeros, no extensions and no trailers, or neither.
// The recording origin and the selftest client parse with this; a violation is a failure.

export interface CanonicalMessage {
  /** Request: method; response: "" */
  method: string;
  /** Request: request-target; response: "" */
  target: string;
  /** Response: status code; request: 0 */
  status: number;
  reason: string;
  /** [name, value] pairs in order, names as sent. */
  headers: Array<[string, string]>;
  body: Buffer;
  framing: 'length' | 'chunked' | 'none' | 'close';
  /** Offset just after this message in the parsed buffer. */
  end: number;
}

export type ParseResult =
  | { kind: 'message'; message: CanonicalMessage }
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string; at: number };

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// field-value: VCHAR / obs-text with SP or HTAB inside, never at either end (RFC 9110 §5.5)
const FIELD_VALUE = /^([\x21-\x7e\x80-\xff]([\x20\x09\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/1\.1$/;
const STATUS_LINE = /^HTTP\/1\.1 ([1-9]\d\d) ([\x20\x09\x21-\x7e\x80-\xff]*)$/;
const DIGITS = /^(0|[1-9]\d*)$/;
const CHUNK_SIZE = /^(0|[1-9a-f][0-9a-f]{0,12})$/;
const CRLF = Buffer.from('\r\n');

function invalid(reason: string, at: number): ParseResult {
  return { kind: 'invalid', reason, at };
}

/** Find CRLF from `from`; a bare CR or LF before it is a violation. */
function lineEnd(buf: Buffer, from: number): number | 'incomplete' | { bad: number } {
  for (let i = from; i < buf.length; i++) {
    const c = buf[i]!;
    if (c === 0x0d) {
      if (i + 1 >= buf.length) return 'incomplete';
      if (buf[i + 1] !== 0x0a) return { bad: i };
      return i;
    }
    if (c === 0x0a) return { bad: i };
  }
  return 'incomplete';
}

interface Head {
  startLine: string;
  headers: Array<[string, string]>;
  bodyStart: number;
}

function parseHead(buf: Buffer, offset: number, maxHead: number): Head | ParseResult {
  const lines: string[] = [];
  let pos = offset;
  for (;;) {
    const e = lineEnd(buf, pos);
    if (e === 'incomplete') return pos - offset > maxHead ? invalid('head larger than the limit', pos) : { kind: 'incomplete' };
    if (typeof e === 'object') return invalid('bare CR or LF in the head', e.bad);
    const line = buf.toString('latin1', pos, e);
    pos = e + 2;
    if (line === '') break;
    lines.push(line);
    if (pos - offset > maxHead) return invalid('head larger than the limit', pos);
  }
  if (lines.length === 0) return invalid('empty line where a start line belongs', offset);
  const headers: Array<[string, string]> = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon <= 0) return invalid(`header line without a name and colon: ${JSON.stringify(line)}`, offset);
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return invalid(`header name is not a token: ${JSON.stringify(name)}`, offset);
    const rest = line.slice(colon + 1);
    if (rest !== '' && !rest.startsWith(' ')) return invalid(`no single SP after the colon of ${name}`, offset);
    const value = rest.slice(1);
    if (!FIELD_VALUE.test(value)) return invalid(`value of ${name} is not a canonical field-value: ${JSON.stringify(value)}`, offset);
    headers.push([name, value]);
  }
  return { startLine: lines[0]!, headers, bodyStart: pos };
}

function framingOf(headers: Array<[string, string]>, at: number): { length: number; chunked: boolean } | ParseResult {
  let length = -1;
  let chunked = false;
  for (const [name, value] of headers) {
    const lower = name.toLowerCase();
    if (lower === 'content-length') {
      if (length !== -1) return invalid('more than one Content-Length', at);
      if (!DIGITS.test(value)) return invalid(`Content-Length is not canonical digits: ${JSON.stringify(value)}`, at);
      length = Number(value);
    } else if (lower === 'transfer-encoding') {
      if (chunked) return invalid('more than one Transfer-Encoding', at);
      if (value !== 'chunked') return invalid(`Transfer-Encoding other than "chunked": ${JSON.stringify(value)}`, at);
      chunked = true;
    }
  }
  if (chunked && length !== -1) return invalid('both Content-Length and Transfer-Encoding', at);
  return { length, chunked };
}

/** A chunked body with no extensions and no trailers; returns [body, end] or a result. */
function parseChunked(buf: Buffer, from: number): { body: Buffer; end: number } | ParseResult {
  const parts: Buffer[] = [];
  let pos = from;
  for (;;) {
    const e = lineEnd(buf, pos);
    if (e === 'incomplete') return pos + 16 < buf.length ? invalid('chunk size line too long', pos) : { kind: 'incomplete' };
    if (typeof e === 'object') return invalid('bare CR or LF in a chunk size line', e.bad);
    const size = buf.toString('latin1', pos, e);
    if (!CHUNK_SIZE.test(size)) return invalid(`chunk size is not canonical lowercase hex: ${JSON.stringify(size)}`, pos);
    const n = parseInt(size, 16);
    pos = e + 2;
    if (n === 0) {
      if (buf.length < pos + 2) return { kind: 'incomplete' };
      if (buf[pos] !== 0x0d || buf[pos + 1] !== 0x0a) return invalid('trailer fields or junk after the last chunk', pos);
      return { body: Buffer.concat(parts), end: pos + 2 };
    }
    if (buf.length < pos + n + 2) return { kind: 'incomplete' };
    parts.push(buf.subarray(pos, pos + n));
    pos += n;
    if (!buf.subarray(pos, pos + 2).equals(CRLF)) return invalid('chunk data not followed by CRLF', pos);
    pos += 2;
  }
}

/** One canonical request starting at `offset`. */
export function parseCanonicalRequest(buf: Buffer, offset = 0, maxHead = 1024 * 1024): ParseResult {
  const head = parseHead(buf, offset, maxHead);
  if ('kind' in head) return head;
  const m = REQUEST_LINE.exec(head.startLine);
  if (m === null) return invalid(`request line is not canonical: ${JSON.stringify(head.startLine)}`, offset);
  const f = framingOf(head.headers, offset);
  if ('kind' in f) return f;
  const base = { method: m[1]!, target: m[2]!, status: 0, reason: '', headers: head.headers };
  return body(buf, head.bodyStart, f, base);
}

/**
 * One canonical response starting at `offset`. `noBody`: it answers a HEAD (or is 1xx/204/304).
 * `eof`: the connection is closed after what `buf` holds (completes a close-delimited body).
 */
export function parseCanonicalResponse(buf: Buffer, offset = 0, opts: { noBody?: boolean; eof?: boolean } = {}): ParseResult {
  const head = parseHead(buf, offset, 1024 * 1024);
  if ('kind' in head) return head;
  const m = STATUS_LINE.exec(head.startLine);
  if (m === null) return invalid(`status line is not canonical: ${JSON.stringify(head.startLine)}`, offset);
  const status = Number(m[1]);
  const f = framingOf(head.headers, offset);
  if ('kind' in f) return f;
  const base = { method: '', target: '', status, reason: m[2]!, headers: head.headers };
  const noBody = opts.noBody === true || status < 200 || status === 204 || status === 304;
  if (noBody) {
    if (f.chunked && !opts.noBody) return invalid(`a ${status} response with Transfer-Encoding`, offset);
    return { kind: 'message', message: { ...base, body: Buffer.alloc(0), framing: 'none', end: head.bodyStart } };
  }
  if (f.length === -1 && !f.chunked) {
    // close-delimited: only with Connection: close, and only complete at EOF
    const close = head.headers.some(([n, v]) => n.toLowerCase() === 'connection' && v.toLowerCase() === 'close');
    if (!close) return invalid('response without framing and without Connection: close', offset);
    if (!opts.eof) return { kind: 'incomplete' };
    return { kind: 'message', message: { ...base, body: buf.subarray(head.bodyStart), framing: 'close', end: buf.length } };
  }
  return body(buf, head.bodyStart, f, base);
}

function body(
  buf: Buffer,
  start: number,
  f: { length: number; chunked: boolean },
  base: Pick<CanonicalMessage, 'method' | 'target' | 'status' | 'reason' | 'headers'>,
): ParseResult {
  if (f.chunked) {
    const c = parseChunked(buf, start);
    if ('kind' in c) return c;
    return { kind: 'message', message: { ...base, body: Buffer.from(c.body), framing: 'chunked', end: c.end } };
  }
  if (f.length > 0) {
    if (buf.length < start + f.length) return { kind: 'incomplete' };
    return { kind: 'message', message: { ...base, body: Buffer.from(buf.subarray(start, start + f.length)), framing: 'length', end: start + f.length } };
  }
  return { kind: 'message', message: { ...base, body: Buffer.alloc(0), framing: f.length === 0 ? 'length' : 'none', end: start } };
}

/** The value of the only header `name` (case-insensitive), or null; throws nothing. */
export function headerValue(m: Pick<CanonicalMessage, 'headers'>, name: string): string | null {
  const lower = name.toLowerCase();
  for (const [n, v] of m.headers) if (n.toLowerCase() === lower) return v;
  return null;
}
