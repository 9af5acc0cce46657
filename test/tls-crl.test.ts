// A client certificate on the configured CRL is refused; the rest of the CA's clients are not.
// A CRL that would make OpenSSL refuse everyone (expired, foreign) is refused at load instead.
import 'reflect-metadata';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type ConnectionOptions } from 'node:tls';
import * as x509 from '@peculiar/x509';
import type { ListenerConfig } from '../src/config/types.ts';
import { ConfigError } from '../src/errors.ts';
import { Listener } from '../src/net/listener.ts';
import { ListenerTls } from '../src/net/tls-context.ts';
import { createAuthority, createCrl, type Authority } from '../src/pki/dev-pki.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { checkNoSocketLeaks, listenerConfig } from './support/tls-listener.ts';

const DAY = 86_400_000;
const pki: TestPki = await makeTestPki();
checkNoSocketLeaks(pki);

const revoked = await pki.issue({ cn: 'revoked-client', usage: ['client'] });
const crlPath = pki.file('crl.pem', await createCrl(pki.ca, [revoked.serial]));

function config(crl: string): ListenerConfig {
  return listenerConfig(pki, 'require', crl);
}

async function start(t: TestContext): Promise<{ listener: Listener; port: number; handled: () => number }> {
  let handled = 0;
  const listener = await Listener.create(config(crlPath), {
    onConnection: (socket) => {
      handled++;
      socket.on('error', () => {});
      socket.end('hello');
    },
  });
  t.after(async () => {
    listener.destroy();
    await listener.close();
    assert.equal(listener.connectionCount, 0);
  });
  return { listener, port: listener.address().port, handled: () => handled };
}

function attempt(port: number, opts: ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    let body = '';
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, ...opts });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => { body += chunk; });
    socket.on('error', () => {});
    socket.on('close', () => { resolve(body); });
  });
}

for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`${maxVersion}: a revoked client certificate is refused`, async (t) => {
    const { listener, port, handled } = await start(t);
    assert.equal(await attempt(port, { maxVersion, cert: revoked.cert, key: revoked.key }), '');
    assert.equal(handled(), 0);
    assert.equal(listener.stats.tlsErrors.get('cert_revoked'), 1);
  });

  test(`${maxVersion}: a certificate not on the CRL is accepted`, async (t) => {
    const { port, handled } = await start(t);
    assert.equal(await attempt(port, { maxVersion, cert: pki.client.cert, key: pki.client.key }), 'hello');
    assert.equal(handled(), 1);
  });
}

async function crlWith(signer: Authority, thisUpdate: Date, nextUpdate: Date): Promise<string> {
  const crl = await x509.X509CrlGenerator.create({
    issuer: signer.certificate.subject,
    thisUpdate,
    nextUpdate,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    signingKey: signer.keys.privateKey,
    entries: [],
  });
  return crl.toString('pem');
}

test('an expired CRL is refused at load, naming the key', async () => {
  const stale = pki.file('stale-crl.pem', await crlWith(pki.ca, new Date(Date.now() - 10 * DAY), new Date(Date.now() - DAY)));
  await assert.rejects(ListenerTls.load(config(stale).tls, 'listeners.edge.tls'), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.path, 'listeners.edge.tls.crl');
    assert.match(err.message, /expired/);
    return true;
  });
});

test('a CRL signed by another CA is refused at load', async () => {
  const other = await createAuthority('other CA');
  const foreign = pki.file('foreign-crl.pem', await crlWith(other, new Date(Date.now() - DAY), new Date(Date.now() + DAY)));
  await assert.rejects(ListenerTls.load(config(foreign).tls, 'listeners.edge.tls'), /not signed by any certificate in client_ca/);
});

test('a file without a CRL is refused at load', async () => {
  const notCrl = pki.file('not-a-crl.pem', pki.ca.cert);
  await assert.rejects(ListenerTls.load(config(notCrl).tls, 'listeners.edge.tls'), /no PEM CRL/);
});
