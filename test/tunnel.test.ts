// TCP mode end to end: client -TLS-> listener -> tunnel -mTLS-> upstream, all real sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { connect, createServer, type Server, type TLSSocket } from 'node:tls';
import type { HostPort, ListenerConfig, UpstreamConfig } from '../src/config/types.ts';
import { Listener } from '../src/net/listener.ts';
import type { TunnelSummary } from '../src/net/tunnel.ts';
import { UpstreamConnector } from '../src/net/upstream-tls.ts';
import { writerStats } from '../src/net/socket-writer.ts';
import type { EndpointSelector, EndpointState } from '../src/pool/types.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';

const MiB = 1024 * 1024;
const pki: TestPki = await makeTestPki();
const SOCKET_RESOURCES = new Set(['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap']);
const openSockets = (): number => process.getActiveResourcesInfo().filter((r) => SOCKET_RESOURCES.has(r)).length;
const baseline = openSockets();

test.after(async () => {
  pki.cleanup();
  await new Promise((resolve) => setTimeout(resolve, 20)); // libuv closes handles a loop turn after 'close'
  assert.equal(openSockets(), baseline, 'no socket left open');
});

interface MutableEndpoint extends EndpointState {
  healthy: boolean;
  lastError: string | null;
}

/** Round-robin over healthy endpoints; a failure takes an endpoint out (no back-off expiry). */
class TestSelector implements EndpointSelector {
  readonly endpoints: MutableEndpoint[];
  readonly failures: string[] = [];
  successes = 0;
  #next = 0;

  constructor(addresses: HostPort[]) {
    this.endpoints = addresses.map((address) => ({ upstream: 'backend', key: `${address.host}:${address.port}`, address, healthy: true, lastError: null }));
  }

  pick(): EndpointState | null {
    for (let i = 0; i < this.endpoints.length; i++) {
      const ep = this.endpoints[this.#next++ % this.endpoints.length] as MutableEndpoint;
      if (ep.healthy) return ep;
    }
    return null;
  }

  reportFailure(endpoint: EndpointState, code: string): void {
    const ep = endpoint as MutableEndpoint;
    ep.healthy = false;
    ep.lastError = code;
    this.failures.push(`${ep.key} ${code}`);
  }

  reportSuccess(): void {
    this.successes++;
  }
}

type Behaviour = 'echo' | 'digest' | 'reset' | 'banner';

interface Upstream { address: HostPort; peers: string[] }

/**
 * An mTLS upstream that requires a client certificate from the test CA. echo: pipes bytes
 * back (with backpressure, ending when the client ends); digest: answers the sha256 of
 * everything received once the client half-closes; reset: destroys on the first byte; banner:
 * speaks first (a line the moment the handshake is done, as SMTP or MySQL servers do), then echoes.
 */
async function upstreamServer(t: test.TestContext, behaviour: Behaviour): Promise<Upstream> {
  const peers: string[] = [];
  const sockets = new Set<TLSSocket>();
  const server: Server = createServer({
    cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true, allowHalfOpen: true,
  }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => { sockets.delete(socket); });
    socket.on('error', () => {});
    peers.push(socket.getPeerX509Certificate()?.subject ?? '');
    if (behaviour === 'echo') {
      socket.pipe(socket);
    } else if (behaviour === 'banner') {
      socket.write('BANNER 220 ready\r\n');
      socket.pipe(socket);
    } else if (behaviour === 'digest') {
      const hash = createHash('sha256');
      socket.on('data', (chunk: Buffer) => { hash.update(chunk); });
      socket.on('end', () => { socket.end(hash.digest('hex')); });
    } else {
      // A TCP RST (a TLSSocket cannot send one, its TCP socket can): not a clean FIN.
      socket.once('data', () => { raw.at(-1)?.resetAndDestroy(); });
    }
  });
  const raw: Socket[] = [];
  server.on('connection', (socket: Socket) => { raw.push(socket); });
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, 'close');
  });
  return { address: { host: '127.0.0.1', port: (server.address() as AddressInfo).port }, peers };
}

async function refusedAddress(): Promise<HostPort> {
  const probe = createTcpServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  probe.close();
  await once(probe, 'close');
  return { host: '127.0.0.1', port };
}

const upstreamConfig: UpstreamConfig = {
  name: 'backend', endpoints: [], healthCheck: null, failureBackoffMs: 5000,
  tls: {
    cert: pki.file('proxy.pem', pki.proxyClient.cert), key: pki.file('proxy-key.pem', pki.proxyClient.key),
    ca: pki.file('ca.pem', pki.ca.cert), serverName: null, minVersion: 'TLSv1.2',
  },
  pool: { maxConnections: 8, maxPending: 8, idleTimeoutMs: 30_000 },
  timeouts: { connectMs: 2000, responseHeaderMs: 30_000, idleMs: 60_000 },
};
const connector = new UpstreamConnector(upstreamConfig);

interface Proxy { listener: Listener; port: number; selector: TestSelector; ended: TunnelSummary[] }

async function proxy(t: test.TestContext, endpoints: HostPort[], opts: { allow?: string[]; idleTimeoutMs?: number } = {}): Promise<Proxy> {
  const config: ListenerConfig = {
    name: 'tunnel', address: { host: '127.0.0.1', port: 0 }, mode: 'tcp', upstream: 'backend', websocket: true, routes: [],
    tls: {
      cert: pki.file('server.pem', pki.server.cert), key: pki.file('server-key.pem', pki.server.key),
      clientCa: pki.file('ca.pem', pki.ca.cert), clientAuth: 'require', allow: opts.allow ?? [], minVersion: 'TLSv1.2', crl: null, handshakeTimeoutMs: 5000,
    },
    limits: { maxHeaderSize: 65536, maxHeaders: 100, maxUriLength: 8192, headerTimeoutMs: 10_000, idleTimeoutMs: opts.idleTimeoutMs ?? 30_000 },
  };
  const selector = new TestSelector(endpoints);
  const ended: TunnelSummary[] = [];
  const listener = await Listener.create(config, {
    onConnection: () => { throw new Error('tcp mode must not call the http handler'); },
    tunnel: { selector, connector, connectTimeoutMs: 2000, onEnd: (s) => { ended.push(s); } },
  });
  t.after(async () => {
    listener.destroy();
    await listener.close();
    assert.equal(listener.connectionCount, 0);
  });
  return { listener, port: listener.address().port, selector, ended };
}

function client(t: test.TestContext, port: number, cert = pki.client): TLSSocket {
  const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, cert: cert.cert, key: cert.key });
  t.after(() => { socket.destroy(); });
  return socket;
}

/** Writes `payload` with backpressure, half-closes, and collects everything until the proxy ends. */
async function exchange(socket: TLSSocket, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => { chunks.push(chunk); });
  const ended = once(socket, 'end');
  if (!socket.encrypted || socket.pending) await once(socket, 'secureConnect');
  for (let off = 0; off < payload.length; off += 64 * 1024) {
    if (!socket.write(payload.subarray(off, off + 64 * 1024))) await once(socket, 'drain');
  }
  socket.end();
  await ended;
  return Buffer.concat(chunks);
}

async function closed(socket: TLSSocket): Promise<{ data: number; error: string | null }> {
  let data = 0;
  let error: string | null = null;
  socket.on('data', (chunk: Buffer) => { data += chunk.length; });
  socket.on('error', (err: NodeJS.ErrnoException) => { error = err.code ?? err.message; });
  if (!socket.closed) await once(socket, 'close');
  return { data, error };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function settled(p: Proxy, count: number): Promise<void> {
  for (let i = 0; i < 200 && p.ended.length < count; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(p.ended.length, count, 'tunnel end reported');
}

test('16 MiB of random bytes cross the tunnel intact, over mTLS with the proxy certificate', async (t) => {
  const up = await upstreamServer(t, 'echo');
  const p = await proxy(t, [up.address]);
  const payload = randomBytes(16 * MiB);
  const echoed = await exchange(client(t, p.port), payload);
  assert.equal(echoed.length, payload.length);
  assert.equal(sha256(echoed), sha256(payload));
  assert.deepEqual(up.peers, ['CN=proxy'], 'the upstream saw the proxy client certificate');
  await settled(p, 1);
  const [summary] = p.ended as [TunnelSummary];
  assert.equal(summary.bytesIn, payload.length);
  assert.equal(summary.bytesOut, payload.length);
  assert.equal(summary.error, null);
  assert.equal(summary.endpoint, `${up.address.host}:${up.address.port}`);
  assert.equal(summary.identity?.subject, 'CN=test-client,O=Example');
  assert.equal(p.listener.stats.bytesIn, payload.length);
  assert.equal(p.selector.successes, 1);
});

test('the tunnel moves bytes as the HTTP path does: through SocketWriters, which gather what comes behind a write in flight', async (t) => {
  const up = await upstreamServer(t, 'echo');
  const p = await proxy(t, [up.address]);
  const payload = randomBytes(8 * MiB);
  const before = writerStats();
  const echoed = await exchange(client(t, p.port), payload);
  assert.equal(sha256(echoed), sha256(payload));
  const after = writerStats();
  // socket.write() straight from 'data' (the tunnel before) leaves these unchanged
  assert.ok(after.copiedBytes - before.copiedBytes > 0, 'bytes gathered behind writes in flight');
  assert.ok(after.flushes - before.flushes > 0, 'and written as one buffer');
  await settled(p, 1);
  assert.equal(writerStats().inUse, before.inUse, 'every writer buffer given back');
});

test('an upstream that speaks first: what it sends before the tunnel is set up reaches the client first, then the echo', async (t) => {
  const up = await upstreamServer(t, 'banner');
  const p = await proxy(t, [up.address]);
  const payload = randomBytes(MiB + 3);
  const got = await exchange(client(t, p.port), payload);
  const banner = Buffer.from('BANNER 220 ready\r\n');
  assert.equal(got.subarray(0, banner.length).toString(), banner.toString());
  assert.equal(sha256(got.subarray(banner.length)), sha256(payload));
  await settled(p, 1);
  assert.equal(p.ended[0]?.bytesOut, banner.length + payload.length);
});

test('backpressure: a client that does not read stops the flow instead of filling memory', async (t) => {
  const up = await upstreamServer(t, 'echo');
  const p = await proxy(t, [up.address]);
  const socket = client(t, p.port);
  await once(socket, 'secureConnect');
  const chunk = Buffer.alloc(MiB, 7);
  const limit = 256 * MiB;
  let written = 0;
  // Never read: once every buffer on the way (kernel socket buffers, one highWaterMark per
  // stream) is full, write() stays false and 'drain' never comes.
  while (written < limit) {
    written += chunk.length;
    if (!socket.write(chunk)) {
      const drained = await Promise.race([once(socket, 'drain').then(() => true), new Promise((resolve) => setTimeout(resolve, 500, false))]);
      if (!drained) break;
    }
  }
  assert.ok(written < limit, `the client stalled (wrote ${written / MiB} MiB)`);
  const heldByProxy = process.memoryUsage().arrayBuffers;
  assert.ok(heldByProxy < 128 * MiB, `buffers stay bounded (${Math.round(heldByProxy / MiB)} MiB)`);
  socket.destroy();
});

test('half-close: the client FIN reaches the upstream, whose answer still comes back', async (t) => {
  const up = await upstreamServer(t, 'digest');
  const p = await proxy(t, [up.address]);
  const payload = randomBytes(3 * MiB + 17);
  const answer = await exchange(client(t, p.port), payload);
  assert.equal(answer.toString(), sha256(payload));
  await settled(p, 1);
  assert.equal(p.ended[0]?.error, null, 'both directions ended cleanly');
});

test('a client not on the allow list is closed before any upstream connection', async (t) => {
  const up = await upstreamServer(t, 'echo');
  const p = await proxy(t, [up.address], { allow: ['CN=someone-else'] });
  const socket = client(t, p.port);
  socket.on('secureConnect', () => { socket.write('hello?'); });
  const result = await closed(socket);
  assert.equal(result.data, 0);
  assert.equal(p.listener.stats.refused, 1);
  assert.deepEqual(up.peers, []);
  assert.equal(p.selector.successes + p.selector.failures.length, 0);
});

test('an allowed client passes the same allow list', async (t) => {
  const up = await upstreamServer(t, 'echo');
  const p = await proxy(t, [up.address], { allow: ['URI=spiffe://test/*'] });
  const echoed = await exchange(client(t, p.port), Buffer.from('allowed'));
  assert.equal(echoed.toString(), 'allowed');
});

test('upstream down: the failure is reported, the next endpoint tried once, then the client closed', async (t) => {
  const down1 = await refusedAddress();
  const down2 = await refusedAddress();
  const p = await proxy(t, [down1, down2]);
  const result = await closed(client(t, p.port));
  assert.equal(result.data, 0);
  assert.deepEqual(p.selector.failures, [`127.0.0.1:${down1.port} MTLS_ERR_UPSTREAM_CONNECT`, `127.0.0.1:${down2.port} MTLS_ERR_UPSTREAM_CONNECT`]);
  await settled(p, 1);
  assert.equal(p.ended[0]?.error, 'MTLS_ERR_UPSTREAM_CONNECT');
});

test('a failed first endpoint is retried on the next one', async (t) => {
  const up = await upstreamServer(t, 'echo');
  const down = await refusedAddress();
  const p = await proxy(t, [down, up.address]);
  const echoed = await exchange(client(t, p.port), Buffer.from('second time lucky'));
  assert.equal(echoed.toString(), 'second time lucky');
  assert.equal(p.selector.failures.length, 1);
});

test('no healthy endpoint: the client is closed', async (t) => {
  const p = await proxy(t, []);
  const result = await closed(client(t, p.port));
  assert.equal(result.data, 0);
  await settled(p, 1);
  assert.equal(p.ended[0]?.error, 'MTLS_ERR_NO_HEALTHY_ENDPOINT');
});

test('an upstream reset takes the client connection down', async (t) => {
  const up = await upstreamServer(t, 'reset');
  const p = await proxy(t, [up.address]);
  const socket = client(t, p.port);
  socket.on('secureConnect', () => { socket.write('boom'); });
  const result = await closed(socket);
  assert.equal(result.data, 0);
  await settled(p, 1);
  assert.notEqual(p.ended[0]?.error, null);
});

test('idle timeout: no bytes either way closes both sides', async (t) => {
  const up = await upstreamServer(t, 'echo');
  const p = await proxy(t, [up.address], { idleTimeoutMs: 150 });
  const socket = client(t, p.port);
  const started = Date.now();
  socket.on('secureConnect', () => { socket.write('one'); });
  const result = await closed(socket);
  assert.equal(result.data, 3);
  assert.ok(Date.now() - started >= 140);
  await settled(p, 1);
  assert.equal(p.ended[0]?.error, 'MTLS_ERR_CLIENT_TIMEOUT');
});

test('destroy() closes open tunnels on both sides', async (t) => {
  const up = await upstreamServer(t, 'echo');
  const p = await proxy(t, [up.address]);
  const socket = client(t, p.port);
  socket.write('x');
  await once(socket, 'data');
  const gone = closed(socket);
  p.listener.destroy();
  await p.listener.close();
  await gone;
  assert.equal(p.ended.length, 1);
  assert.equal(p.listener.connectionCount, 0);
});
