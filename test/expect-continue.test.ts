// Expect: 100-continue: the upstream's 100 reaches the client before it sends the body.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { makeTestPki } from './support/pki.ts';
import { startUpstream } from './support/upstream.ts';
import { startProxy } from './support/proxy.ts';

test('the client receives 100 Continue, sends its body, gets the final response', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startProxy(pki, up.port);
  t.after(async () => {
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const s = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
  let got = '';
  const sawContinue = new Promise<void>((resolve) => {
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (got.includes('100 Continue')) resolve();
    });
  });
  const closed = new Promise<void>((resolve) => s.on('close', () => resolve()));
  await new Promise<void>((resolve) => s.once('secureConnect', () => resolve()));
  s.write('PUT /upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 11\r\nConnection: close\r\n\r\n');
  await sawContinue;
  assert.equal(up.seen.length, 0, 'upstream answered before the body');
  s.write('hello world');
  await closed;
  assert.match(got, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
  assert.equal(up.seen[0]!.bodyLength, 11);
  assert.equal(up.seen[0]!.headers.expect, '100-continue');
});
