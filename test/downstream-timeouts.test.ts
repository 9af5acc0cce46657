// limits.header_timeout: a head that trickles in (slowloris) gets 408 and is closed;
// limits.idle_timeout: an idle keep-alive connection is closed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { makeTestPki } from './support/pki.ts';
import { startUpstream } from './support/upstream.ts';
import { startProxy } from './support/proxy.ts';

test('a head not complete within header_timeout -> 408, connection closed, upstream untouched', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startProxy(pki, up.port, { limits: { header_timeout: '400ms', idle_timeout: '5s' } });
  t.after(async () => {
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const s = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  await new Promise<void>((r) => s.once('secureConnect', () => r()));
  const t0 = Date.now();
  // keep sending bytes, never finishing the head: activity must not extend the deadline
  const trickle = setInterval(() => s.write('X-Slow: 1\r\n'), 100);
  s.write('GET / HTTP/1.1\r\nHost: localhost\r\n');
  await new Promise<void>((r) => s.on('close', () => r()));
  clearInterval(trickle);
  const took = Date.now() - t0;
  assert.match(got, /^HTTP\/1\.1 408 /);
  assert.match(got, /MTLS_ERR_HEADER_TIMEOUT/);
  assert.ok(took >= 350 && took < 2500, `closed after ${took} ms`);
  assert.equal(up.connections, 0);
});

test('an idle keep-alive connection is closed after idle_timeout', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startProxy(pki, up.port, { limits: { header_timeout: '5s', idle_timeout: '300ms' } });
  t.after(async () => {
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const s = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
  let got = '';
  s.on('data', (d: Buffer) => (got += d.toString('latin1')));
  await new Promise<void>((r) => s.once('secureConnect', () => r()));
  s.write('GET /one HTTP/1.1\r\nHost: localhost\r\n\r\n');
  const t0 = Date.now();
  await new Promise<void>((r) => s.on('close', () => r()));
  const took = Date.now() - t0;
  assert.match(got, /^HTTP\/1\.1 200 /);
  assert.ok(took >= 280 && took < 2500, `closed after ${took} ms`);
  assert.equal(up.seen.length, 1);
});
