// Egress mTLS: the proxy presents its client certificate, verifies the upstream's name and
// chain, classifies failures as UPSTREAM_CONNECT / UPSTREAM_TLS, and resumes TLS sessions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { connect, createServer, type Server, type TLSSocket, type TlsOptions } from 'node:tls';
import type { UpstreamConfig, UpstreamTlsConfig } from '../src/config/types.ts';
import { ConfigError, ProxyError } from '../src/errors.ts';
import { UpstreamConnector, upstreamConnector } from '../src/net/upstream-tls.ts';
import { createAuthority, issue } from '../src/pki/dev-pki.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';

const pki: TestPki = await makeTestPki();
const SOCKET_RESOURCES = new Set(['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap']);
const openSockets = (): number => process.getActiveResourcesInfo().filter((r) => SOCKET_RESOURCES.has(r)).length;
const baseline = openSockets();

test.after(async () => {
  pki.cleanup();
  await new Promise((resolve) => setTimeout(resolve, 20)); // libuv closes handles a loop turn after 'close'
  assert.equal(openSockets(), baseline, 'no socket left open');
});

function upstream(tls: Partial<UpstreamTlsConfig> = {}): UpstreamConfig {
  return {
    name: 'backend', endpoints: [], healthCheck: null, failureBackoffMs: 5000,
    tls: {
      cert: pki.file('proxy.pem', pki.proxyClient.cert), key: pki.file('proxy-key.pem', pki.proxyClient.key),
      ca: pki.file('ca.pem', pki.ca.cert), serverName: null, minVersion: 'TLSv1.2', ...tls,
    },
    pool: { maxConnections: 8, maxPending: 8, idleTimeoutMs: 30_000 },
    timeouts: { connectMs: 2000, responseHeaderMs: 30_000, idleMs: 60_000 },
  };
}

interface Echo { port: number; peers: Array<{ cn: string | null; authorized: boolean; servername: string | false | null }> }

/** An mTLS echo server like a real upstream: requires a client certificate from the test CA. */
async function echoServer(t: test.TestContext, extra: TlsOptions = {}): Promise<Echo> {
  const peers: Echo['peers'] = [];
  const sockets = new Set<TLSSocket>();
  const server: Server = createServer({
    cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true, ...extra,
  }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => { sockets.delete(socket); });
    const cert = socket.getPeerX509Certificate();
    peers.push({ cn: cert ? (/CN=([^\n]+)/.exec(cert.subject)?.[1] ?? null) : null, authorized: socket.authorized, servername: socket.servername });
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => { socket.write(chunk); });
    socket.on('end', () => { socket.end(); });
  });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, 'close');
  });
  return { port: (server.address() as AddressInfo).port, peers };
}

async function roundTrip(socket: TLSSocket, text: string): Promise<string> {
  socket.write(text);
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  return chunk.toString();
}

async function finish(socket: TLSSocket): Promise<void> {
  socket.on('error', () => {});
  socket.end();
  socket.resume();
  if (!socket.closed) await once(socket, 'close');
}

/** The connected socket, destroyed at the end of the test even if an assertion fails first. */
async function connected(t: test.TestContext, pending: Promise<TLSSocket>): Promise<TLSSocket> {
  const socket = await pending;
  t.after(() => { socket.destroy(); });
  return socket;
}

async function rejection(p: Promise<TLSSocket>): Promise<ProxyError> {
  const err = await p.then((s) => { s.destroy(); throw new Error('connected'); }, (e: unknown) => e);
  assert.ok(err instanceof ProxyError, String(err));
  return err;
}

test('egress presents the proxy client certificate and leaves no connect-phase listeners', async (t) => {
  const echo = await echoServer(t);
  // Node's own listeners on a client TLSSocket, as a plain tls.connect leaves them.
  const reference = connect({ host: '127.0.0.1', port: echo.port, ca: pki.ca.cert, cert: pki.proxyClient.cert, key: pki.proxyClient.key });
  t.after(() => { reference.destroy(); });
  await once(reference, 'secureConnect');
  const socket = await connected(t, upstreamConnector(upstream()).connect({ host: '127.0.0.1', port: echo.port }, 2000));
  for (const event of ['error', 'close', 'end', 'connect', 'secureConnect', 'timeout']) {
    assert.equal(socket.listenerCount(event), reference.listenerCount(event), `no '${event}' listener of ours left`);
  }
  assert.equal(socket.authorized, true);
  assert.equal(await roundTrip(socket, 'ping'), 'ping');
  assert.deepEqual(echo.peers[1], { cn: 'proxy', authorized: true, servername: false }, 'no SNI for an IP endpoint');
  await finish(socket);
  await finish(reference);
});

test('a host name endpoint is sent as SNI and checked against the certificate', async (t) => {
  const echo = await echoServer(t);
  const socket = await connected(t, upstreamConnector(upstream()).connect({ host: 'localhost', port: echo.port }, 2000));
  await roundTrip(socket, 'x'); // the server's side of a TLS 1.3 handshake finishes after ours
  assert.equal(echo.peers[0]?.servername, 'localhost');
  await finish(socket);
});

test('server_name overrides the name sent and checked', async (t) => {
  const echo = await echoServer(t);
  const socket = await connected(t, upstreamConnector(upstream({ serverName: 'localhost' })).connect({ host: '127.0.0.1', port: echo.port }, 2000));
  await roundTrip(socket, 'x');
  assert.equal(echo.peers[0]?.servername, 'localhost');
  await finish(socket);
});

test('wrong server_name -> UPSTREAM_TLS', async (t) => {
  const echo = await echoServer(t);
  const err = await rejection(upstreamConnector(upstream({ serverName: 'backend.internal' })).connect({ host: '127.0.0.1', port: echo.port }, 2000));
  assert.equal(err.code, 'MTLS_ERR_UPSTREAM_TLS');
  assert.equal((err.cause as NodeJS.ErrnoException).code, 'ERR_TLS_CERT_ALTNAME_INVALID');
  assert.equal(err.retryable, false);
});

test('an upstream certificate from an untrusted CA -> UPSTREAM_TLS', async (t) => {
  const rogue = await createAuthority('rogue CA');
  const fake = await issue(rogue, { cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'], usage: ['server'] });
  const echo = await echoServer(t, { cert: fake.cert, key: fake.key });
  const err = await rejection(upstreamConnector(upstream()).connect({ host: '127.0.0.1', port: echo.port }, 2000));
  assert.equal(err.code, 'MTLS_ERR_UPSTREAM_TLS');
  assert.equal((err.cause as NodeJS.ErrnoException).code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
});

test('TLS 1.2 upstream refusing a proxy without a client certificate -> UPSTREAM_TLS', async (t) => {
  const echo = await echoServer(t, { maxVersion: 'TLSv1.2' });
  const err = await rejection(upstreamConnector(upstream({ cert: null, key: null })).connect({ host: '127.0.0.1', port: echo.port }, 2000));
  assert.equal(err.code, 'MTLS_ERR_UPSTREAM_TLS');
});

test('refused port -> UPSTREAM_CONNECT (retryable)', async () => {
  const probe = createTcpServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  probe.close();
  await once(probe, 'close');
  const err = await rejection(upstreamConnector(upstream()).connect({ host: '127.0.0.1', port }, 2000));
  assert.equal(err.code, 'MTLS_ERR_UPSTREAM_CONNECT');
  assert.equal((err.cause as NodeJS.ErrnoException).code, 'ECONNREFUSED');
  assert.equal(err.retryable, true);
});

test('an upstream that never answers the handshake -> UPSTREAM_CONNECT after the timeout', async (t) => {
  const held = new Set<Socket>();
  const silent: TcpServer = createTcpServer((socket) => { held.add(socket); socket.on('error', () => {}); });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  t.after(async () => {
    for (const s of held) s.destroy();
    silent.close();
    await once(silent, 'close');
  });
  const started = Date.now();
  const err = await rejection(upstreamConnector(upstream()).connect({ host: '127.0.0.1', port: (silent.address() as AddressInfo).port }, 150));
  assert.equal(err.code, 'MTLS_ERR_UPSTREAM_CONNECT');
  assert.equal((err.cause as NodeJS.ErrnoException).code, 'ETIMEDOUT');
  assert.ok(Date.now() - started >= 140);
});

for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
  test(`${maxVersion}: the second connect to an endpoint resumes the session`, async (t) => {
    const echo = await echoServer(t, { maxVersion });
    const connector = upstreamConnector(upstream());
    const endpoint = { host: '127.0.0.1', port: echo.port };
    const first = await connected(t, connector.connect(endpoint, 2000));
    assert.equal(first.isSessionReused(), false);
    assert.equal(await roundTrip(first, 'one'), 'one'); // TLS 1.3 tickets arrive after the handshake
    await finish(first);
    const second = await connected(t, connector.connect(endpoint, 2000));
    assert.equal(second.isSessionReused(), true);
    assert.equal(await roundTrip(second, 'two'), 'two');
    await finish(second);
  });
}

test('reload swaps the client certificate for new connections and forgets sessions', async (t) => {
  const echo = await echoServer(t);
  const dir = await makeTestPki(); // separate files, so this test can rewrite them
  t.after(() => { dir.cleanup(); });
  const paths = { cert: dir.file('proxy.pem', pki.proxyClient.cert), key: dir.file('proxy-key.pem', pki.proxyClient.key) };
  const connector = new UpstreamConnector(upstream(paths));
  const endpoint = { host: '127.0.0.1', port: echo.port };
  const first = await connected(t, connector.connect(endpoint, 2000));
  await roundTrip(first, 'x');
  await finish(first);

  assert.deepEqual(await connector.reload(), { changed: false });
  const next = await pki.issue({ cn: 'proxy-2', usage: ['client'] });
  dir.file('proxy.pem', next.cert);
  const mismatch = await connector.reload();
  assert.equal(mismatch.changed, false);
  assert.match(mismatch.error ?? '', /upstreams\.backend\.tls\.key: private key does not match/);
  dir.file('proxy-key.pem', next.key);
  assert.deepEqual(await connector.reload(), { changed: true });
  assert.equal(connector.certificates.client[0]?.subject, 'CN=proxy-2');

  const second = await connected(t, connector.connect(endpoint, 2000));
  assert.equal(second.isSessionReused(), false, 'sessions verified under the old files are dropped');
  await roundTrip(second, 'y');
  await finish(second);
  assert.deepEqual(echo.peers.map((p) => p.cn), ['proxy', 'proxy-2']);
});

test('bad files at construction are config errors naming the key', () => {
  assert.throws(() => upstreamConnector(upstream({ cert: `${pki.dir}/missing.pem` })), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.path, 'upstreams.backend.tls.cert');
    return true;
  });
  assert.throws(() => upstreamConnector(upstream({ key: null })), /cert and key must be configured together/);
  assert.throws(() => upstreamConnector(upstream({ ca: pki.file('not-ca.pem', pki.client.cert) })), /is not a CA certificate/);
});
