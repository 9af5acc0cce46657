// The request and response heads are collected into arrays reused from message to message and
// rewritten through one shared buffer (src/http/headers.ts HeadWriter): a message with fewer
// fields than the one before must not carry any of the earlier ones, and the bytes must be
// exactly what the rules say (hop-by-hop and Connection-named fields gone, trailing OWS
// trimmed, canonical Content-Length digits, our X-Request-Id and X-Forwarded-*).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RequestHead } from '../src/http/request-head.ts';
import { ResponseHead } from '../src/http/response-head.ts';
import { upstreamHead } from '../src/http/request-filters.ts';

const LIMITS = { maxHeaderSize: 64 * 1024, maxHeaders: 100, maxUriLength: 8 * 1024, headerTimeoutMs: 10_000, idleTimeoutMs: 60_000 };

function requestHead(head: RequestHead, target: string, fields: Array<[string, string]>): void {
  head.reset();
  const t = Buffer.from(target, 'latin1');
  assert.equal(head.onUrl(t, 0, t.length), null);
  for (const [n, v] of fields) {
    const nb = Buffer.from(n, 'latin1');
    const vb = Buffer.from(v, 'latin1');
    assert.equal(head.onHeaderField(nb, 0, nb.length), null);
    assert.equal(head.onHeaderValue(vb, 0, vb.length), null);
  }
  assert.equal(head.complete('GET', 1, 1, true, false), null);
}

function responseHead(head: ResponseHead, reason: string, fields: Array<[string, string]>): void {
  head.reset();
  const r = Buffer.from(reason, 'latin1');
  head.addReason(r, 0, r.length);
  for (const [n, v] of fields) {
    const nb = Buffer.from(n, 'latin1');
    const vb = Buffer.from(v, 'latin1');
    head.addName(nb, 0, nb.length);
    head.addValue(vb, 0, vb.length);
  }
  head.end();
}

test('request heads: a shorter head after a longer one carries none of its fields', () => {
  const head = new RequestHead(LIMITS);
  const info = { target: '/a', host: 'origin.test', requestId: 'rid-1', clientAddr: '10.0.0.1', xfcc: 'Hash=ab;Subject="CN=c"', upgrade: null };
  requestHead(head, '/a', [['Host', 'h.test'], ['Connection', 'X-Drop'], ['X-Drop', '1'], ['X-Forwarded-For', '1.2.3.4'], ['Accept', 'a/b  '], ['Content-Length', '007'], ['X-Request-Id', 'theirs']]);
  assert.equal(
    upstreamHead(head, info).toString('latin1'),
    'GET /a HTTP/1.1\r\nHost: origin.test\r\nAccept: a/b\r\nx-forwarded-for: 1.2.3.4, 10.0.0.1\r\nx-forwarded-proto: https\r\n' +
      'x-request-id: rid-1\r\nx-forwarded-client-cert: Hash=ab;Subject="CN=c"\r\ncontent-length: 7\r\n\r\n',
  );
  requestHead(head, '/b', [['host', 'h.test']]);
  assert.deepEqual(head.headers, ['host', 'h.test']);
  assert.deepEqual(head.lower, ['host']);
  assert.equal(
    upstreamHead(head, { ...info, target: '/b', xfcc: null }).toString('latin1'),
    'GET /b HTTP/1.1\r\nhost: origin.test\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: https\r\nx-request-id: rid-1\r\n\r\n',
  );
});

test('response heads: a shorter head after a longer one carries none of its fields', () => {
  const head = new ResponseHead();
  const req = { id: 'rid-2', method: 'GET', clientMinor: 1, clientKeepAlive: true };
  responseHead(head, 'OK', [['Content-Type', 'text/plain \t'], ['Connection', 'keep-alive, X-Hop'], ['X-Hop', '1'], ['Keep-Alive', 'timeout=5'], ['X-Request-Id', 'upstream'], ['Content-Length', '0013']]);
  assert.equal(head.problem(true), null);
  assert.equal(head.final(200, req, false).toString('latin1'), 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nx-request-id: rid-2\r\n\r\n');
  assert.equal(head.mode, 'length');
  assert.equal(head.bodyLength, 13);
  responseHead(head, 'Not Found', [['transfer-encoding', 'chunked']]);
  assert.equal(head.problem(true), null);
  assert.equal(head.final(404, req, true).toString('latin1'), 'HTTP/1.1 404 Not Found\r\nx-request-id: rid-2\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n');
  assert.equal(head.mode, 'chunked');
  responseHead(head, 'Continue', [['X-Early', 'yes'], ['Connection', 'close']]);
  assert.equal(head.interim(100).toString('latin1'), 'HTTP/1.1 100 Continue\r\nX-Early: yes\r\n\r\n');
  responseHead(head, 'OK', [['Transfer-Encoding', 'gzip, chunked']]);
  assert.match(head.problem(true)!, /transfer coding other than "chunked"/);
});
