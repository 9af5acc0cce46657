// The proxy's own answers: a status line with the right reason phrase for every error kind,
// a Content-Length that matches the body as written (latin1), Connection: close.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STATUS_CODES } from 'node:http';
import { ErrorCodes, ProxyError, type ErrorKind } from '../src/errors.ts';
import { localResponse } from '../src/http/local-response.ts';

test('every error kind answers with its status and the standard reason phrase', () => {
  for (const kind of Object.keys(ErrorCodes) as ErrorKind[]) {
    const err = new ProxyError(kind, `a ${kind} happened`);
    const text = localResponse(err, 'req-1');
    // Node's table is the reference where it has the status; 499 is nginx's own
    const reason = err.status === 499 ? 'Client Closed Request' : STATUS_CODES[err.status];
    assert.ok(text.startsWith(`HTTP/1.1 ${err.status} ${reason}\r\n`), `${kind}: ${text.split('\r\n')[0]}`);
    const [head, body] = text.split('\r\n\r\n') as [string, string];
    assert.match(head, /\r\nconnection: close(\r\n|$)/);
    assert.match(head, /\r\nx-request-id: req-1(\r\n|$)/);
    assert.equal(Number(/content-length: (\d+)/.exec(head)![1]), Buffer.byteLength(body, 'latin1'));
    assert.ok(body.includes(`MTLS_ERR_${kind}`));
  }
});
