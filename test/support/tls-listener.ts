// Shared by the TLS listener tests: a ListenerConfig on the test PKI, and the check that a
// test file leaves no socket open.
import assert from 'node:assert/strict';
import { after } from 'node:test';
import type { ClientAuth, ListenerConfig } from '../../src/config/types.ts';
import type { TestPki } from './pki.ts';

const SOCKET_RESOURCES = new Set(['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap']);
const openSockets = (): number => process.getActiveResourcesInfo().filter((r) => SOCKET_RESOURCES.has(r)).length;

/** Call once at the top of a test file: afterwards, as many sockets as before, and the PKI removed. */
export function checkNoSocketLeaks(pki: TestPki): void {
  const baseline = openSockets();
  after(async () => {
    pki.cleanup();
    await new Promise((resolve) => setTimeout(resolve, 20)); // libuv closes handles a loop turn after 'close'
    assert.equal(openSockets(), baseline, 'no socket left open');
  });
}

/** An http-mode listener on 127.0.0.1:0 with the test server certificate and CA. */
export function listenerConfig(pki: TestPki, clientAuth: ClientAuth = 'require', crl: string | null = null): ListenerConfig {
  return {
    name: 'edge', address: { host: '127.0.0.1', port: 0 }, mode: 'http', upstream: 'backend', websocket: true, routes: [],
    tls: {
      cert: pki.file('server.pem', pki.server.cert), key: pki.file('server-key.pem', pki.server.key),
      clientCa: pki.file('ca.pem', pki.ca.cert), clientAuth, allow: [], minVersion: 'TLSv1.2', crl, handshakeTimeoutMs: 5000,
    },
    limits: { maxHeaderSize: 65536, maxHeaders: 100, maxUriLength: 8192, headerTimeoutMs: 10_000, idleTimeoutMs: 60_000 },
  };
}
