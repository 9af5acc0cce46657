// Client certificates outside their validity window are refused in the handshake, with the
// verifier's reason on the listener's TLS error counter (tls_handshake_errors_total{reason}).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type ConnectionOptions } from 'node:tls';
import type { ClientAuth, ListenerConfig } from '../src/config/types.ts';
import { Listener } from '../src/net/listener.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { checkNoSocketLeaks, listenerConfig } from './support/tls-listener.ts';

const DAY = 86_400_000;
const pki: TestPki = await makeTestPki();
checkNoSocketLeaks(pki);

function config(clientAuth: ClientAuth): ListenerConfig {
  return listenerConfig(pki, clientAuth);
}

async function start(t: TestContext, clientAuth: ClientAuth): Promise<{ listener: Listener; port: number; handled: () => number }> {
  let handled = 0;
  const listener = await Listener.create(config(clientAuth), {
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

const expired = await pki.issue({ cn: 'expired-client', usage: ['client'], notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
const early = await pki.issue({ cn: 'future-client', usage: ['client'], notBefore: new Date(Date.now() + DAY), days: 30 });

for (const clientAuth of ['require', 'optional'] as const) {
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    test(`${clientAuth} ${maxVersion}: an expired client certificate is refused`, async (t) => {
      const { listener, port, handled } = await start(t, clientAuth);
      assert.equal(await attempt(port, { maxVersion, cert: expired.cert, key: expired.key }), '');
      assert.equal(handled(), 0);
      assert.equal(listener.stats.tlsErrors.get('cert_has_expired'), 1);
    });
  }

  test(`${clientAuth}: a not-yet-valid client certificate is refused`, async (t) => {
    const { listener, port, handled } = await start(t, clientAuth);
    assert.equal(await attempt(port, { cert: early.cert, key: early.key }), '');
    assert.equal(handled(), 0);
    assert.equal(listener.stats.tlsErrors.get('cert_not_yet_valid'), 1);
  });
}

test('control: a current certificate from the same CA is accepted', async (t) => {
  const { port, handled } = await start(t, 'require');
  assert.equal(await attempt(port, { cert: pki.client.cert, key: pki.client.key }), 'hello');
  assert.equal(handled(), 1);
});
