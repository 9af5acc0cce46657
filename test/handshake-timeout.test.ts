// listeners.<name>.tls.handshake_timeout: a peer that connects and never finishes the TLS
// handshake is closed by the proxy (Node's handshakeTimeout only reports the timeout as
// 'tlsClientError'; it does not close the socket), and such a peer does not hold up a drain.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { makeTestPki } from './support/pki.ts';
import { startUpstream } from './support/upstream.ts';
import { startProxy } from './support/proxy.ts';

function closedWithin(socket: net.Socket, ms: number): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`socket still open after ${ms} ms`)); }, ms);
    socket.on('error', () => {});
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

const connected = (port: number): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => { resolve(s); });
    s.once('error', reject);
  });

test('handshake_timeout closes a peer that sends nothing, one that half-closes, one that sends half a record', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startProxy(pki, up.port, { tls: { handshake_timeout: '300ms' } });
  t.after(async () => {
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const silent = await connected(proxy.port);
  const halfClosed = await connected(proxy.port);
  halfClosed.end();
  const partial = await connected(proxy.port);
  partial.write(Buffer.from([0x16, 0x03, 0x01])); // the start of a ClientHello record header
  const took = await Promise.all([closedWithin(silent, 3000), closedWithin(halfClosed, 3000), closedWithin(partial, 3000)]);
  for (const ms of took) assert.ok(ms >= 250, `closed after ${ms} ms, before the timeout`);
  assert.equal(up.connections, 0);
  assert.equal(proxy.server.listeners()[0]?.stats.open, 0);
});

test('a peer stuck in the handshake does not hold a drain to drain_timeout', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startProxy(pki, up.port, { tls: { handshake_timeout: '300ms' }, server: { drain_timeout: '20s' } });
  t.after(async () => {
    await up.close();
    pki.cleanup();
  });
  const stuck = await connected(proxy.port);
  stuck.end('\n');
  const closed = closedWithin(stuck, 3000);
  const t0 = Date.now();
  await proxy.stop();
  const took = Date.now() - t0;
  await closed;
  assert.ok(took < 3000, `drain took ${took} ms`);
});
