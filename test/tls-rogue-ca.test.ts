// A client certificate from a CA the listener does not trust is refused in the handshake, even
// when the rogue CA copies our CA's name and the certificate copies a trusted client's names.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type ConnectionOptions } from 'node:tls';
import type { ListenerConfig } from '../src/config/types.ts';
import { Listener } from '../src/net/listener.ts';
import { createAuthority, issue } from '../src/pki/dev-pki.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { checkNoSocketLeaks, listenerConfig } from './support/tls-listener.ts';

const pki: TestPki = await makeTestPki();
checkNoSocketLeaks(pki);

function config(): ListenerConfig {
  return listenerConfig(pki);
}

async function start(t: TestContext): Promise<{ listener: Listener; port: number; handled: () => number }> {
  let handled = 0;
  const listener = await Listener.create(config(), {
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

function attempt(port: number, opts: ConnectionOptions): Promise<{ body: string; error: string | null }> {
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

for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`${maxVersion}: a certificate from an unrelated CA is refused`, async (t) => {
    const { listener, port, handled } = await start(t);
    const rogue = await createAuthority('rogue CA');
    const cert = await issue(rogue, { cn: 'test-client', org: 'Example', dns: ['client.internal'], uris: ['spiffe://test/client'], usage: ['client'] });
    const out = await attempt(port, { maxVersion, cert: cert.cert, key: cert.key });
    assert.equal(out.body, '');
    assert.equal(handled(), 0);
    assert.equal(listener.stats.tlsErrors.get('unable_to_verify_leaf_signature'), 1);
  });

  test(`${maxVersion}: a rogue CA named like ours is refused`, async (t) => {
    const { listener, port, handled } = await start(t);
    const lookalike = await createAuthority(pki.ca.name);
    const cert = await issue(lookalike, { cn: 'test-client', org: 'Example', usage: ['client'] });
    const out = await attempt(port, { maxVersion, cert: cert.cert, key: cert.key });
    assert.equal(out.body, '');
    assert.equal(handled(), 0);
    // OpenSSL matches issuers by key identifier as well as name, so the lookalike is simply unknown.
    assert.equal(listener.stats.tlsErrors.get('unable_to_verify_leaf_signature'), 1);
  });

  test(`${maxVersion}: a rogue chain sent along with the leaf does not help`, async (t) => {
    const { port, handled } = await start(t);
    const rogue = await createAuthority('rogue CA');
    const cert = await issue(rogue, { cn: 'test-client', usage: ['client'] });
    const out = await attempt(port, { maxVersion, cert: `${cert.cert}\n${rogue.cert}`, key: cert.key });
    assert.equal(out.body, '');
    assert.equal(handled(), 0);
  });
}

test('control: the trusted client certificate is accepted', async (t) => {
  const { port, handled } = await start(t);
  const out = await attempt(port, { cert: pki.client.cert, key: pki.client.key });
  assert.equal(out.body, 'hello');
  assert.equal(handled(), 1);
});
