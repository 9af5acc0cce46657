// The oracle of the selftest and the fuzzers: the strict canonical parser accepts the proxy's
// output form and refuses every near miss (an oracle that accepts everything proves nothing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCanonicalRequest, parseCanonicalResponse } from '../src/selftest/canonical.ts';

const req = (s: string): ReturnType<typeof parseCanonicalRequest> => parseCanonicalRequest(Buffer.from(s, 'latin1'));

test('canonical requests parse to their message, with the offset of the next one', () => {
  const two = 'POST /a?b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabcGET / HTTP/1.1\r\nhost: x\r\n\r\n';
  const r = req(two);
  assert.equal(r.kind, 'message');
  if (r.kind !== 'message') return;
  assert.equal(r.message.method, 'POST');
  assert.equal(r.message.target, '/a?b');
  assert.equal(r.message.body.toString(), 'abc');
  assert.equal(r.message.framing, 'length');
  assert.deepEqual(r.message.headers, [['host', 'x'], ['content-length', '3']]);
  const next = parseCanonicalRequest(Buffer.from(two, 'latin1'), r.message.end);
  assert.equal(next.kind === 'message' && next.message.method, 'GET');
  const chunked = req('PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\n');
  assert.equal(chunked.kind === 'message' && chunked.message.body.toString(), 'abc0123456789');
  assert.equal(req('GET / HTTP/1.1\r\nhost: x\r\n').kind, 'incomplete');
  assert.equal(req('POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\nab').kind, 'incomplete');
});

test('every near miss of the canonical form is refused', () => {
  const bad: Array<[string, string]> = [
    ['HTTP/1.0 request line', 'GET / HTTP/1.0\r\n\r\n'],
    ['two spaces', 'GET  / HTTP/1.1\r\n\r\n'],
    ['bare LF', 'GET / HTTP/1.1\nhost: x\r\n\r\n'],
    ['bare CR', 'GET / HTTP/1.1\r\nhost: x\ry\r\n\r\n'],
    ['no space after colon', 'GET / HTTP/1.1\r\nhost:x\r\n\r\n'],
    ['two spaces after colon', 'GET / HTTP/1.1\r\nhost:  x\r\n\r\n'],
    ['trailing whitespace', 'GET / HTTP/1.1\r\nhost: x \r\n\r\n'],
    ['space before colon', 'GET / HTTP/1.1\r\nhost : x\r\n\r\n'],
    ['obs-fold', 'GET / HTTP/1.1\r\nx-a: b\r\n c\r\n\r\n'],
    ['NUL in a value', 'GET / HTTP/1.1\r\nx-a: b\x00c\r\n\r\n'],
    ['CL with TE', 'POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['two CL', 'POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\na'],
    ['CL leading zero', 'POST / HTTP/1.1\r\ncontent-length: 01\r\n\r\na'],
    ['TE not chunked', 'POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n'],
    ['uppercase chunk size', 'POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n'],
    ['chunk size leading zero', 'POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n03\r\nabc\r\n0\r\n\r\n'],
    ['chunk extension', 'POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\n\r\n'],
    ['trailer', 'POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-t: v\r\n\r\n'],
    ['chunk data without CRLF', 'POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n'],
  ];
  for (const [what, s] of bad) assert.equal(req(s).kind, 'invalid', what);
});

test('responses: HEAD and 204/304 have no body, close-delimited needs Connection: close and EOF', () => {
  const head = parseCanonicalResponse(Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n'), 0, { noBody: true });
  assert.equal(head.kind === 'message' && head.message.body.length, 0);
  const closeDelimited = Buffer.from('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello');
  assert.equal(parseCanonicalResponse(closeDelimited).kind, 'incomplete');
  const r = parseCanonicalResponse(closeDelimited, 0, { eof: true });
  assert.equal(r.kind === 'message' && r.message.body.toString(), 'hello');
  assert.equal(parseCanonicalResponse(Buffer.from('HTTP/1.1 200 OK\r\n\r\nhello'), 0, { eof: true }).kind, 'invalid');
  assert.equal(parseCanonicalResponse(Buffer.from('HTTP/1.1 200 O\x00K\r\ncontent-length: 0\r\n\r\n', 'latin1')).kind, 'invalid');
  assert.equal(parseCanonicalResponse(Buffer.from('HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n')).kind, 'invalid');
});
