// A client's identity is read from its certificate once: connections that present the same
// certificate share it (and its X-Forwarded-Client-Cert value); another certificate gets its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { makeTestPki } from './support/pki.ts';
import { identityFromSocket, xfccOf, formatXfcc, type ClientIdentity } from '../src/net/identity.ts';

test('connections with the same certificate share one identity; another certificate gets its own', async (t) => {
  const pki = await makeTestPki();
  const other = await pki.issue({ cn: 'other-client', usage: ['client'] });
  const seen: Array<ClientIdentity | null> = [];
  const server = tls.createServer({ key: pki.server.key, cert: pki.server.cert, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (s) => {
    seen.push(identityFromSocket(s));
    s.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => {
    server.close();
    pki.cleanup();
  });
  const port = (server.address() as { port: number }).port;
  const connect = (cert: string, key: string): Promise<void> => new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, cert, key });
    s.on('error', reject);
    s.on('close', () => resolve());
    s.resume();
  });
  await connect(pki.client.cert, pki.client.key);
  await connect(pki.client.cert, pki.client.key);
  await connect(other.cert, other.key);
  assert.equal(seen.length, 3);
  const [a, b, c] = seen as [ClientIdentity, ClientIdentity, ClientIdentity];
  assert.equal(a.cn, 'test-client');
  assert.equal(b, a, 'the second connection with the same certificate got a fresh identity');
  assert.equal(c.cn, 'other-client');
  assert.notEqual(c.sha256, a.sha256);
  assert.equal(xfccOf(a), formatXfcc(a));
  assert.equal(xfccOf(b), xfccOf(a));
  assert.equal(xfccOf(c), formatXfcc(c));
});
