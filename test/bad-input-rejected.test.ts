// Every bad-input case of the contract gets its status, the connection is closed, and the
// upstream sees nothing (raw TLS sockets: real clients refuse to send these bytes).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { startUpstream, type TestUpstream } from './support/upstream.ts';
import { startProxy, rawExchange, type TestProxy } from './support/proxy.ts';

let pki: TestPki;
let up: TestUpstream;
let proxy: TestProxy;

before(async () => {
  pki = await makeTestPki();
  up = await startUpstream(pki);
  proxy = await startProxy(pki, up.port, { limits: { max_header_size: '4KiB', max_headers: 20, max_uri_length: '1KiB' } });
});
after(async () => {
  await proxy.stop();
  await up.close();
  pki.cleanup();
});

const H = 'Host: localhost\r\n';
const cases: Array<[string, string, number, string]> = [
  // [name, bytes, status, error code]
  ['CL and TE together (CL.TE)', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400, 'AMBIGUOUS_FRAMING'],
  ['TE and CL together (TE.CL)', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n`, 400, 'AMBIGUOUS_FRAMING'],
  ['differing duplicate Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`, 400, 'AMBIGUOUS_FRAMING'],
  ['TE not ending in chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, gzip\r\n\r\n`, 400, 'AMBIGUOUS_FRAMING'],
  ['TE identity', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n\r\nabc`, 400, 'AMBIGUOUS_FRAMING'],
  ['obfuscated TE (TE.TE)', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`, 400, 'AMBIGUOUS_FRAMING'],
  ['bad chunk size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, 400, 'AMBIGUOUS_FRAMING'],
  ['chunk size with trailing space', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n`, 400, 'AMBIGUOUS_FRAMING'],
  ['chunk extension with bare CR', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3;a=b\rc\r\nabc\r\n0\r\n\r\n`, 400, 'BAD_REQUEST'],
  ['negative Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, 400, 'AMBIGUOUS_FRAMING'],
  ['obs-fold', `GET / HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n`, 400, 'BAD_REQUEST'],
  ['obs-fold hiding Content-Length', `POST / HTTP/1.1\r\n${H}X-A: a\r\n Content-Length: 5\r\n\r\nhello`, 400, 'BAD_REQUEST'],
  ['bare LF line endings', `GET / HTTP/1.1\n${H.replace('\r', '')}\n`, 400, 'BAD_REQUEST'],
  ['bare CR in a header value', `GET / HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`, 400, 'BAD_REQUEST'],
  ['NUL in a header value', `GET / HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`, 400, 'BAD_REQUEST'],
  ['control byte in a header value', `GET / HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`, 400, 'BAD_REQUEST'],
  ['space before colon', `GET / HTTP/1.1\r\nHost : localhost\r\n\r\n`, 400, 'BAD_REQUEST'],
  ['whitespace before first header', `GET / HTTP/1.1\r\n ${H}\r\n`, 400, 'BAD_REQUEST'],
  ['missing Host (HTTP/1.1)', `GET / HTTP/1.1\r\nX-A: b\r\n\r\n`, 400, 'BAD_REQUEST'],
  ['two Host headers', `GET / HTTP/1.1\r\n${H}Host: other\r\n\r\n`, 400, 'BAD_REQUEST'],
  ['unknown method', `FOO / HTTP/1.1\r\n${H}\r\n`, 400, 'BAD_METHOD'],
  ['CONNECT', `CONNECT localhost:443 HTTP/1.1\r\n${H}\r\n`, 400, 'BAD_METHOD'],
  ['target not origin/absolute form', `GET foo HTTP/1.1\r\n${H}\r\n`, 400, 'BAD_REQUEST'],
  ['HTTP/2.0 request line', `GET / HTTP/2.0\r\n${H}\r\n`, 505, 'VERSION_NOT_SUPPORTED'],
  ['HTTP/1.2', `GET / HTTP/1.2\r\n${H}\r\n`, 505, 'VERSION_NOT_SUPPORTED'],
  ['HTTP/0.9 version', `GET / HTTP/0.9\r\n${H}\r\n`, 505, 'VERSION_NOT_SUPPORTED'],
  ['HTTP/2 preface', `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, 505, 'VERSION_NOT_SUPPORTED'],
  ['target too long', `GET /${'a'.repeat(2000)} HTTP/1.1\r\n${H}\r\n`, 414, 'URI_TOO_LONG'],
  ['head too large', `GET / HTTP/1.1\r\n${H}X-Big: ${'b'.repeat(5000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
  ['too many headers', `GET / HTTP/1.1\r\n${H}${Array.from({ length: 25 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`, 431, 'TOO_MANY_HEADERS'],
  ['oversized trailers', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\nX-T: ${'t'.repeat(5000)}\r\n\r\n`, 431, 'HEADERS_TOO_LARGE'],
];

for (const [name, bytes, status, code] of cases) {
  test(`${name} -> ${status}, closed, upstream saw nothing`, async () => {
    const before = up.seen.length;
    const beforeConns = up.connections;
    const response = await rawExchange(proxy.port, pki, bytes);
    assert.match(response, new RegExp(`^HTTP/1\\.1 ${status} `), response.slice(0, 200));
    assert.match(response, /\r\nconnection: close\r\n/i);
    assert.ok(response.includes(`MTLS_ERR_${code}`), `expected MTLS_ERR_${code} in: ${response.slice(0, 300)}`);
    assert.equal(up.seen.length, before, 'the upstream received a request');
    assert.equal(up.connections, beforeConns, 'the proxy opened an upstream connection');
    const rec = proxy.records.at(-1)!;
    assert.equal(rec.status, status);
    assert.equal(rec.error, `MTLS_ERR_${code}`);
  });
}

test('a bad request after a good one on the same connection: the good one is answered, the bad one refused', async () => {
  const before = up.seen.length;
  const response = await rawExchange(proxy.port, pki, `GET /ok HTTP/1.1\r\n${H}\r\nPOST / HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`);
  assert.match(response, /^HTTP\/1\.1 200 /);
  assert.match(response, /HTTP\/1\.1 400 Bad Request/);
  assert.equal(up.seen.length, before + 1);
  assert.equal(up.seen.at(-1)!.url, '/ok');
});

test('an error inside a chunked body: the upstream never sees a complete message', async () => {
  const before = up.seen.length;
  // a valid first chunk, then garbage in the second chunk's size line
  const response = await rawExchange(proxy.port, pki, `POST /body HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nQQ\r\nxx\r\n0\r\n\r\n`);
  assert.match(response, /^HTTP\/1\.1 400 /);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(up.seen.length, before, 'upstream completed a request it must not have');
});
