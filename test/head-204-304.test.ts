// Responses without a body keep the connection's framing intact: HEAD (with the GET's
// Content-Length), 204, 304; a close-delimited upstream body is re-framed as chunked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { startUpstream, type TestUpstream } from './support/upstream.ts';
import { startProxy, rawExchange, type TestProxy } from './support/proxy.ts';
import tls from 'node:tls';

let pki: TestPki;
let up: TestUpstream;
let proxy: TestProxy;

before(async () => {
  pki = await makeTestPki();
  up = await startUpstream(pki);
  up.handlers.set('/head', (_req, res) => {
    res.writeHead(200, { 'content-length': '1000', 'content-type': 'text/plain' });
    res.end();
  });
  up.handlers.set('/204', (_req, res) => {
    res.writeHead(204, { 'x-kind': 'no-content' });
    res.end();
  });
  up.handlers.set('/304', (_req, res) => {
    res.writeHead(304, { etag: '"v1"' });
    res.end();
  });
  proxy = await startProxy(pki, up.port);
});
after(async () => {
  await proxy.stop();
  await up.close();
  pki.cleanup();
});

const H = 'Host: localhost\r\n';

test('HEAD, 204 and 304 on one connection, then a GET: every message framed right', async () => {
  const out = await rawExchange(proxy.port, pki, `HEAD /head HTTP/1.1\r\n${H}\r\nGET /204 HTTP/1.1\r\n${H}\r\nGET /304 HTTP/1.1\r\n${H}If-None-Match: "v1"\r\n\r\nGET /last HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, 3000);
  const statuses = [...out.matchAll(/^HTTP\/1\.1 (\d{3})/gm)].map((m) => m[1]);
  assert.deepEqual(statuses, ['200', '204', '304', '200']);
  const headPart = out.slice(0, out.indexOf('HTTP/1.1 204'));
  assert.match(headPart, /content-length: 1000\r\n/i, 'HEAD keeps the GET Content-Length');
  assert.ok(headPart.endsWith('\r\n\r\n'), 'no body after the HEAD response');
  assert.match(out, /etag: "v1"/);
  assert.match(out, /"url":"\/last"/);
});

test('a close-delimited upstream response reaches an HTTP/1.1 client chunked, and the connection stays usable', async () => {
  // a raw upstream that answers without Content-Length and closes
  const raw = tls.createServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (s) => {
    s.once('data', () => s.end('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close'));
  });
  await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
  const port = (raw.address() as { port: number }).port;
  const p2 = await (await import('./support/proxy.ts')).startProxy(pki, port);
  try {
    const out = await rawExchange(p2.port, pki, `GET /x HTTP/1.1\r\n${H}\r\n`, 1500);
    assert.match(out, /^HTTP\/1\.1 200 /);
    assert.match(out, /transfer-encoding: chunked\r\n/i);
    assert.ok(out.includes('b\r\nuntil-close\r\n0\r\n\r\n'), JSON.stringify(out));
    assert.doesNotMatch(out, /connection: close/i);
  } finally {
    await p2.stop();
    raw.close();
  }
});

test('HTTP/1.0 client gets a close-delimited body for a chunked upstream response', async () => {
  up.handlers.set('/chunked', (_req, res) => {
    res.write('part1-');
    res.end('part2');
  });
  const out = await rawExchange(proxy.port, pki, `GET /chunked HTTP/1.0\r\n${H}\r\n`, 2000);
  assert.match(out, /^HTTP\/1\.1 200 /);
  assert.doesNotMatch(out, /transfer-encoding/i);
  assert.match(out, /connection: close/i);
  assert.ok(out.endsWith('\r\n\r\npart1-part2'), JSON.stringify(out));
});
