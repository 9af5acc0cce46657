// client_auth = require | optional | none on a real listener, over TLS 1.2 and 1.3 (in 1.3
// the client sees its handshake finish before the server's verdict arrives as an alert).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type ConnectionOptions } from 'node:tls';
import type { ClientAuth, ListenerConfig } from '../src/config/types.ts';
import { Listener } from '../src/net/listener.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { checkNoSocketLeaks, listenerConfig } from './support/tls-listener.ts';

const pki: TestPki = await makeTestPki();
checkNoSocketLeaks(pki);

function config(clientAuth: ClientAuth): ListenerConfig {
  return listenerConfig(pki, clientAuth);
}

interface Seen { subject: string | null; allowed: boolean }

async function start(t: TestContext, clientAuth: ClientAuth): Promise<{ listener: Listener; port: number; seen: Seen[] }> {
  const seen: Seen[] = [];
  const listener = await Listener.create(config(clientAuth), {
    onConnection: (socket, identity, allowed) => {
      seen.push({ subject: identity?.subject ?? null, allowed });
      socket.on('error', () => {});
      socket.end(`hello ${identity?.cn ?? 'anonymous'}`);
    },
  });
  t.after(async () => {
    listener.destroy();
    await listener.close();
    assert.equal(listener.connectionCount, 0);
  });
  return { listener, port: listener.address().port, seen };
}

interface Outcome { body: string; error: string | null }

function attempt(port: number, opts: ConnectionOptions): Promise<Outcome> {
  return new Promise((resolve) => {
    let body = '';
    let error: string | null = null;
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, ...opts });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => { body += chunk; });
    socket.on('error', (err: NodeJS.ErrnoException) => { error = err.code ?? err.message; });
    socket.on('close', () => { resolve({ body, error }); });
  });
}

const withClientCert: ConnectionOptions = { cert: pki.client.cert, key: pki.client.key };

for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`require (${maxVersion}): no client certificate fails the handshake`, async (t) => {
    const { listener, port, seen } = await start(t, 'require');
    const out = await attempt(port, { maxVersion });
    assert.equal(out.body, '');
    assert.notEqual(out.error, null);
    assert.deepEqual(seen, [], 'the connection never reached the handler');
    assert.equal(listener.stats.tlsErrors.get('no_client_certificate'), 1);
  });

  test(`require (${maxVersion}): a valid client certificate is accepted with its identity`, async (t) => {
    const { port, seen } = await start(t, 'require');
    const out = await attempt(port, { maxVersion, ...withClientCert });
    assert.equal(out.error, null);
    assert.equal(out.body, 'hello test-client');
    assert.deepEqual(seen, [{ subject: 'CN=test-client,O=Example', allowed: true }]);
  });

  test(`optional (${maxVersion}): no certificate is fine and the identity is null`, async (t) => {
    const { port, seen } = await start(t, 'optional');
    const out = await attempt(port, { maxVersion });
    assert.equal(out.error, null);
    assert.equal(out.body, 'hello anonymous');
    assert.deepEqual(seen, [{ subject: null, allowed: true }]);
  });

  test(`optional (${maxVersion}): a valid certificate gives an identity`, async (t) => {
    const { port, seen } = await start(t, 'optional');
    const out = await attempt(port, { maxVersion, ...withClientCert });
    assert.equal(out.body, 'hello test-client');
    assert.equal(seen[0]?.subject, 'CN=test-client,O=Example');
  });

  test(`optional (${maxVersion}): a presented certificate that does not verify is refused`, async (t) => {
    const other = await makeTestPki();
    t.after(() => { other.cleanup(); });
    const { listener, port, seen } = await start(t, 'optional');
    const out = await attempt(port, { maxVersion, cert: other.client.cert, key: other.client.key });
    assert.equal(out.body, '');
    assert.deepEqual(seen, []);
    assert.equal(listener.stats.refused, 1);
    assert.equal(listener.stats.tlsErrors.get('unable_to_verify_leaf_signature'), 1);
  });
}

test('none: no certificate is requested; one offered by the client is never seen', async (t) => {
  const { port, seen } = await start(t, 'none');
  // Without the server's CertificateRequest a client does not send its certificate.
  const offered = await attempt(port, withClientCert);
  assert.equal(offered.body, 'hello anonymous');
  const without = await attempt(port, {});
  assert.equal(without.body, 'hello anonymous');
  assert.deepEqual(seen, [{ subject: null, allowed: true }, { subject: null, allowed: true }]);
});
