// Request and response generators: mostly well-formed HTTP/1.1 with the framing headers that
// smuggling lives in (duplicated and obfuscated Transfer-Encoding and Content-Length, chunk sizes,
// extensions, trailers, whitespace, line endings, header names and values), plus byte-level
// mutations. Bytes are latin1 strings so shrunk counterexamples print readably.
import fc from 'fast-check';

export const HOST = 'localhost';

/** A latin1 string of bytes drawn from `pool`. */
function from(pool: string, maxLength: number, minLength = 0): fc.Arbitrary<string> {
  return fc.array(fc.constantFrom(...pool.split('')), { minLength, maxLength }).map((a) => a.join(''));
}

const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const VCHAR = `${TCHAR}"(),/:;<=>?@[\\]{}`;
const ODD = '\x00\x01\x08\x0b\x0c\x0d\x0a\x1f\x7f\x80\x85\xa0\xff';

const eol: fc.Arbitrary<string> = fc.oneof({ weight: 150, arbitrary: fc.constant('\r\n') }, { weight: 1, arbitrary: fc.constantFrom('\n', '\r', '\r\r\n', '\n\r', '\r\x00') });

const token = (max: number): fc.Arbitrary<string> => from(TCHAR, max, 1);

const method: fc.Arbitrary<string> = fc.oneof(
  { weight: 40, arbitrary: fc.constantFrom('GET', 'POST', 'PUT') },
  { weight: 8, arbitrary: fc.constantFrom('HEAD', 'OPTIONS', 'DELETE', 'PATCH', 'TRACE', 'PROPFIND', 'QUERY') },
  { weight: 1, arbitrary: fc.constantFrom('CONNECT', 'PRI', 'get', 'FOO', 'G ET', '', 'GET\x00') },
  { weight: 1, arbitrary: token(8) },
);

const target: fc.Arbitrary<string> = fc.oneof(
  { weight: 40, arbitrary: fc.tuple(from('abcxyz019-._~', 6), fc.option(from('abc=&%2F', 6))).map(([p, q]) => `/${p}${q === null ? '' : `?${q}`}`) },
  {
    weight: 2,
    arbitrary: fc.constantFrom('/', '*', `http://${HOST}/abs`, `https://${HOST}:8443/x?y`, `http://u:p@${HOST}/`, `${HOST}:443`, 'ftp://x/', '/a#frag', '/%00', '/\x7f', '/a b', '//x', `http://${HOST}`, 'http://[::1]/', 'http://a b/'),
  },
  { weight: 1, arbitrary: fc.constantFrom(8190, 8191, 8192, 8193).map((n) => `/${'u'.repeat(n)}`) },
);

const version: fc.Arbitrary<string> = fc.oneof(
  { weight: 60, arbitrary: fc.constant('HTTP/1.1') },
  { weight: 6, arbitrary: fc.constant('HTTP/1.0') },
  { weight: 1, arbitrary: fc.constantFrom('HTTP/0.9', 'HTTP/2.0', 'HTTP/1.2', 'HTTP/1.10', 'http/1.1', 'HTTP/11', 'HTTP/1.1 ', 'HTTP/3.0') },
);

const sep: fc.Arbitrary<string> = fc.oneof({ weight: 100, arbitrary: fc.constant(': ') }, { weight: 3, arbitrary: fc.constantFrom(':', ':\t', ':  ', ': \t') }, { weight: 1, arbitrary: fc.constantFrom(' : ', ' :', '\t:', ':\x0b') });

const digits = fc.nat({ max: 40 }).map(String);
const clValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 20, arbitrary: digits },
  {
    weight: 2,
    arbitrary: fc.oneof(
      digits.map((d) => `00${d}`),
      digits.map((d) => `+${d}`),
      digits.map((d) => `-${d}`),
      digits.map((d) => `0x${d}`),
      digits.map((d) => `${d}, ${d}`),
      digits.map((d) => `${d} `),
      digits.map((d) => `${d[0]} ${d}`),
      fc.constantFrom('', '99999999999999999999', '18446744073709551615', '1_0', '\xa05'),
    ),
  },
);

const teValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 20, arbitrary: fc.constant('chunked') },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      'Chunked', 'CHUNKED', 'gzip, chunked', 'chunked, gzip', 'identity', ',chunked', 'chunked,', 'chunked, chunked', 'chunked ', ' chunked',
      '\tchunked', '\xa0chunked', 'xchunked', 'chunked\x00', '', 'gzip', 'chunked;q=1', 'deflate,chunked', 'identity, chunked',
    ),
  },
);

const hostValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 30, arbitrary: fc.constant(HOST) },
  { weight: 3, arbitrary: fc.constantFrom(`${HOST}:8443`, '127.0.0.1', '[::1]:443', 'LOCALHOST', `${HOST}.`, `${HOST}:`) },
  { weight: 1, arbitrary: fc.constantFrom('', 'a b', `evil@${HOST}`, `${HOST}/x`, 'h\xe9', `${HOST} `, `${HOST}\t`, '[::1', 'a%zz', 'a%41') },
);

const plainValue: fc.Arbitrary<string> = fc.oneof(
  { weight: 30, arbitrary: from(`${VCHAR} \t`, 16) },
  { weight: 1, arbitrary: fc.tuple(from(VCHAR, 6), from(ODD, 2, 1), from(VCHAR, 6)).map(([a, b, c]) => a + b + c) },
);

const name: fc.Arbitrary<string> = fc.oneof(
  { weight: 40, arbitrary: fc.constantFrom('X-A', 'Accept', 'User-Agent', 'X-Forwarded-For', 'X-Request-Id', 'Cookie', 'X-Forwarded-Client-Cert') },
  { weight: 2, arbitrary: fc.constantFrom('Connection', 'Keep-Alive', 'TE', 'Trailer', 'Upgrade', 'Expect', 'Proxy-Connection', 'Proxy-Authorization') },
  { weight: 8, arbitrary: token(10) },
  { weight: 1, arbitrary: fc.tuple(token(5), from(` \t${ODD}"(),/;<=>?@[]{}`, 2, 1), token(5)).map(([a, b, c]) => a + b + c) },
);

function valueFor(n: string): fc.Arbitrary<string> {
  switch (n.toLowerCase()) {
    case 'connection':
      return fc.constantFrom('close', 'keep-alive', 'Upgrade', 'X-A, close', 'TE', 'close, keep-alive', 'keep-alive, X-A');
    case 'upgrade':
      return fc.constantFrom('websocket', 'h2c', 'foo/2');
    case 'expect':
      return fc.constantFrom('100-continue', 'foo', '100-Continue');
    default:
      return plainValue;
  }
}

/** One field line. `caseVariant` spells framing names the way obfuscators do. */
const otherHeader: fc.Arbitrary<string> = name.chain((n) => fc.tuple(fc.constant(n), sep, valueFor(n), eol)).map(([n, s, v, e]) => `${n}${s}${v}${e}`);

const frameName = (base: string): fc.Arbitrary<string> =>
  fc.oneof({ weight: 30, arbitrary: fc.constant(base) }, { weight: 4, arbitrary: fc.constantFrom(base.toLowerCase(), base.toUpperCase()) }, { weight: 1, arbitrary: fc.constantFrom(`${base} `, ` ${base}`, `${base}\x85`, `${base}\t`) });

const field = (n: fc.Arbitrary<string>, v: fc.Arbitrary<string>): fc.Arbitrary<string> => fc.tuple(n, sep, v, eol).map(([a, s, b, e]) => `${a}${s}${b}${e}`);

const hexSize = (n: number): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 60, arbitrary: fc.constant(n.toString(16)) },
    { weight: 2, arbitrary: fc.constantFrom(n.toString(16).toUpperCase(), `00${n.toString(16)}`) },
    { weight: 1, arbitrary: fc.constantFrom(`${n.toString(16)} `, ` ${n.toString(16)}`, `0x${n.toString(16)}`, `-${n.toString(16)}`, (n + 1).toString(16), '', `${n.toString(16)}_0`) },
  );

const ext: fc.Arbitrary<string> = fc.oneof(
  { weight: 30, arbitrary: fc.constant('') },
  { weight: 5, arbitrary: fc.constantFrom(';a=b', ';name', ';q="x y"', ';a=b;c', ' ;a', ';a="\\"q"') },
  { weight: 1, arbitrary: fc.constantFrom(';a\rb', ';\n', ';a=\x00', ';a="b', '\r;a') },
);

const chunk: fc.Arbitrary<string> = fc.tuple(from(`${VCHAR} \r\n`, 12), ext, eol, eol).chain(([data, x, e1, e2]) => hexSize(data.length).map((size) => `${size}${x}${e1}${data}${e2}`));

const trailer: fc.Arbitrary<string> = fc.oneof({ weight: 8, arbitrary: field(fc.constantFrom('X-Checksum', 'X-T'), plainValue) }, { weight: 1, arbitrary: field(fc.constantFrom('Content-Length', 'Transfer-Encoding', 'Host'), digits) });

const chunkedBody: fc.Arbitrary<string> = fc
  .tuple(fc.array(chunk, { maxLength: 3 }), ext, eol, fc.array(trailer, { maxLength: 2 }), eol)
  .map(([chunks, x, e1, trailers, e2]) => `${chunks.join('')}0${x}${e1}${trailers.join('')}${e2}`);

type Framing = 'none' | 'length' | 'chunked' | 'length+chunked' | 'chunked+length' | 'length+length' | 'chunked+chunked';
const framing: fc.Arbitrary<Framing> = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom<Framing>('none', 'length', 'chunked') },
  { weight: 1, arbitrary: fc.constantFrom<Framing>('length+chunked', 'chunked+length', 'length+length', 'chunked+chunked') },
);

/** One request: request line, headers (Host mostly first), framing headers, body. */
export const request: fc.Arbitrary<string> = fc
  .record({
    method,
    target,
    version,
    sp1: fc.oneof({ weight: 100, arbitrary: fc.constant(' ') }, { weight: 1, arbitrary: fc.constantFrom('  ', '\t', '') }),
    lineEnd: eol,
    host: fc.oneof({ weight: 30, arbitrary: field(frameName('Host'), hostValue).map((h) => [h]) }, { weight: 1, arbitrary: fc.constantFrom([], [`Host: ${HOST}\r\n`, `Host: ${HOST}\r\n`], [`Host: ${HOST}\r\n`, 'Host: other\r\n']) }),
    others: fc.array(otherHeader, { maxLength: 4 }),
    fold: fc.oneof({ weight: 40, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.tuple(fc.constantFrom(' ', '\t'), plainValue, eol).map(([w, v, e]) => `${w}${v}${e}`) }),
    framing,
    body: from(`${VCHAR} \r\n`, 24),
    chunked: chunkedBody,
    cl: clValue,
    cl2: clValue,
    te: teValue,
    lengthDelta: fc.oneof({ weight: 10, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) }),
    order: fc.nat(),
    blank: eol,
  })
  .chain((r) =>
    fc.tuple(fc.constant(r), field(frameName('Content-Length'), fc.constant(r.cl)), field(frameName('Content-Length'), fc.constant(r.cl2)), field(frameName('Transfer-Encoding'), fc.constant(r.te))),
  )
  .map(([r, clLine, cl2Line, teLine]) => {
    const framingLines: string[] = [];
    let body = '';
    const sized = (declared: string): string => {
      const n = /^\d{1,4}$/.test(declared) ? Number(declared) : r.body.length;
      return r.body.padEnd(n, 'b').slice(0, Math.max(0, n + r.lengthDelta));
    };
    switch (r.framing) {
      case 'length':
        framingLines.push(clLine);
        body = sized(r.cl);
        break;
      case 'chunked':
        framingLines.push(teLine);
        body = r.chunked;
        break;
      case 'length+chunked':
        framingLines.push(clLine, teLine);
        body = r.chunked;
        break;
      case 'chunked+length':
        framingLines.push(teLine, clLine);
        body = r.chunked;
        break;
      case 'length+length':
        framingLines.push(clLine, cl2Line);
        body = sized(r.cl);
        break;
      case 'chunked+chunked':
        framingLines.push(teLine, teLine);
        body = r.chunked;
        break;
      case 'none':
        break;
    }
    const lines = [...r.host, ...r.others];
    // framing headers anywhere among the others
    lines.splice(r.order % (lines.length + 1), 0, ...framingLines);
    if (r.fold !== null) lines.splice((r.order >> 3) % (lines.length + 1), 0, r.fold);
    return `${r.method}${r.sp1}${r.target} ${r.version}${r.lineEnd}${lines.join('')}${r.blank}${body}`;
  });

export interface Mutation {
  at: number;
  op: 'insert' | 'delete' | 'replace';
  byte: number;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  op: fc.constantFrom('insert', 'delete', 'replace'),
  byte: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(0x0d, 0x0a, 0x20, 0x09, 0x3a, 0x2c, 0x3b, 0x00, 0x30) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
});

export function applyMutations(s: string, muts: readonly Mutation[]): string {
  let out = s;
  for (const m of muts) {
    if (out.length === 0) break;
    const at = m.at % out.length;
    const ch = String.fromCharCode(m.byte);
    if (m.op === 'insert') out = out.slice(0, at) + ch + out.slice(at);
    else if (m.op === 'delete') out = out.slice(0, at) + out.slice(at + 1);
    else out = out.slice(0, at) + ch + out.slice(at + 1);
  }
  return out;
}

/** 1-3 requests on one connection, sometimes mutated at the byte level. */
export const requestStream: fc.Arbitrary<string> = fc
  .tuple(fc.oneof({ weight: 6, arbitrary: request.map((r) => [r]) }, { weight: 3, arbitrary: fc.array(request, { minLength: 2, maxLength: 3 }) }), fc.oneof({ weight: 6, arbitrary: fc.constant<Mutation[]>([]) }, { weight: 1, arbitrary: fc.array(mutation, { minLength: 1, maxLength: 3 }) }))
  .map(([reqs, muts]) => applyMutations(reqs.join(''), muts));

/** Any bytes at all, for the parser-split property (mixed with generated requests). */
export const anyBytes: fc.Arbitrary<string> = fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u).toString('latin1'));

/** Cut points for splitting a byte string (offsets, taken modulo its length). */
export const cuts: fc.Arbitrary<number[]> = fc.array(fc.nat(), { maxLength: 8 });

// ---- responses ---------------------------------------------------------------------------

const statusLine: fc.Arbitrary<string> = fc.oneof(
  { weight: 20, arbitrary: fc.constantFrom('HTTP/1.1 200 OK', 'HTTP/1.1 404 Not Found', 'HTTP/1.1 500 Oops', 'HTTP/1.0 200 OK') },
  { weight: 2, arbitrary: fc.constantFrom('HTTP/1.1 204 No Content', 'HTTP/1.1 304 Not Modified', 'HTTP/1.1 200 ', 'HTTP/1.1 299 X', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK') },
  { weight: 1, arbitrary: fc.constantFrom('HTTP/1.1 2000 OK', 'HTTP/2 200', 'HTTP/1.1 20 OK', 'HTTP/1.1 200 O\x00K', 'HTTP/1.1  200 OK', 'http/1.1 200 OK', 'HTTP/1.1 101 Switching Protocols', 'ICY 200 OK') },
);

export interface HostileResponse {
  raw: string;
  /** The origin closes the connection after writing. */
  close: boolean;
}

/** Upstream responses: mostly valid, with bad framing, huge heads, early close, bare LF, extra bytes. */
export const hostileResponse: fc.Arbitrary<HostileResponse> = fc
  .record({
    status: statusLine,
    lineEnd: eol,
    others: fc.array(otherHeader, { maxLength: 3 }),
    framing,
    body: from(`${VCHAR} \r\n`, 24),
    chunked: chunkedBody,
    cl: clValue,
    cl2: clValue,
    te: teValue,
    lengthDelta: fc.oneof({ weight: 10, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) }),
    order: fc.nat(),
    blank: eol,
    huge: fc.oneof({ weight: 30, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 60_000, max: 70_000 }) }),
    truncate: fc.oneof({ weight: 8, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.nat() }),
    extra: fc.oneof({ weight: 8, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil', 'junk', '\r\n') }),
    close: fc.boolean(),
  })
  .chain((r) =>
    fc.tuple(fc.constant(r), field(frameName('Content-Length'), fc.constant(r.cl)), field(frameName('Content-Length'), fc.constant(r.cl2)), field(frameName('Transfer-Encoding'), fc.constant(r.te))),
  )
  .map(([r, clLine, cl2Line, teLine]) => {
    const framingLines: string[] = [];
    let body = r.body;
    const sized = (declared: string): string => {
      const n = /^\d{1,4}$/.test(declared) ? Number(declared) : r.body.length;
      return r.body.padEnd(n, 'b').slice(0, Math.max(0, n + r.lengthDelta));
    };
    if (r.framing === 'length' || r.framing === 'length+length') body = sized(r.cl);
    if (r.framing.includes('chunked')) body = r.chunked;
    if (r.framing.startsWith('length')) framingLines.push(clLine);
    if (r.framing.startsWith('chunked') || r.framing === 'length+chunked') framingLines.push(teLine);
    if (r.framing === 'chunked+length') framingLines.push(clLine);
    if (r.framing === 'length+length') framingLines.push(cl2Line);
    if (r.framing === 'chunked+chunked') framingLines.push(teLine);
    const lines = [...r.others];
    lines.splice(r.order % (lines.length + 1), 0, ...framingLines);
    if (r.huge > 0) lines.push(`X-Huge: ${'h'.repeat(r.huge)}\r\n`);
    let raw = `${r.status}${r.lineEnd}${lines.join('')}${r.blank}${body}${r.extra}`;
    if (r.truncate >= 0) raw = raw.slice(0, r.truncate % (raw.length + 1));
    return { raw, close: r.close || r.truncate >= 0 };
  });
