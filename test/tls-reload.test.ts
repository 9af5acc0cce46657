// Hot swap of the listener's certificates: new handshakes see the new files, connections
// opened before keep working, and a bad file leaves the working context in place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { ListenerConfig } from '../src/config/types.ts';
import { Listener } from '../src/net/listener.ts';
import { createAuthority, issue } from '../src/pki/dev-pki.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';

const DAY = 86_400_000;
const SOCKET_RESOURCES = new Set(['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap']);
const openSockets = (): number => process.getActiveResourcesInfo().filter((r) => SOCKET_RESOURCES.has(r)).length;
const baseline = openSockets();

test.after(async () => {
  await new Promise((resolve) => setTimeout(resolve, 20)); // libuv closes handles a loop turn after 'close'
  assert.equal(openSockets(), baseline, 'no socket left open');
});

interface Fixture {
  pki: TestPki;
  listener: Listener;
  port: number;
  paths: { cert: string; key: string; ca: string };
}

async function setup(t: test.TestContext): Promise<Fixture> {
  const pki = await makeTestPki();
  const paths = {
    cert: pki.file('server.pem', pki.server.cert),
    key: pki.file('server-key.pem', pki.server.key),
    ca: pki.file('ca.pem', pki.ca.cert),
  };
  const config: ListenerConfig = {
    name: 'edge', address: { host: '127.0.0.1', port: 0 }, mode: 'http', upstream: 'backend', websocket: true, routes: [],
    tls: { cert: paths.cert, key: paths.key, clientCa: paths.ca, clientAuth: 'require', allow: [], minVersion: 'TLSv1.2', crl: null, handshakeTimeoutMs: 5000 },
    limits: { maxHeaderSize: 65536, maxHeaders: 100, maxUriLength: 8192, headerTimeoutMs: 10_000, idleTimeoutMs: 60_000 },
  };
  const listener = await Listener.create(config, {
    onConnection: (socket) => {
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => { socket.write(chunk); });
      socket.on('end', () => { socket.end(); });
    },
  });
  t.after(async () => {
    listener.destroy();
    await listener.close();
    assert.equal(listener.connectionCount, 0);
    pki.cleanup();
  });
  return { pki, listener, port: listener.address().port, paths };
}

async function open(f: Fixture, extra: ConnectionOptions = {}): Promise<TLSSocket> {
  const socket = connect({
    host: '127.0.0.1', port: f.port, servername: 'localhost', ca: f.pki.ca.cert,
    cert: f.pki.client.cert, key: f.pki.client.key, ...extra,
  });
  await once(socket, 'secureConnect');
  return socket;
}

async function echo(socket: TLSSocket, text: string): Promise<string> {
  socket.write(text);
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  return chunk.toString();
}

async function closeClient(socket: TLSSocket): Promise<void> {
  socket.end();
  socket.resume();
  if (!socket.closed) await once(socket, 'close');
}

// Once per socket: on a client TLSSocket (Node 24.21) a second getPeerX509Certificate() call
// returns undefined.
const fingerprint = (socket: TLSSocket): string => socket.getPeerX509Certificate()?.fingerprint256 ?? '';

test('a new handshake sees the new certificate; an open connection keeps working', async (t) => {
  const f = await setup(t);
  const before = await open(f);
  const oldPrint = fingerprint(before);
  const next = await issue(f.pki.ca, { cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'], usage: ['server'] });
  f.pki.file('server.pem', next.cert);
  f.pki.file('server-key.pem', next.key);

  assert.deepEqual(await f.listener.reload(), { changed: true });
  const after = await open(f);
  const newPrint = fingerprint(after);
  assert.notEqual(newPrint, oldPrint);
  assert.equal(newPrint, f.listener.tls.certificates.server[0]?.fingerprint256);
  assert.equal(await echo(before, 'still here'), 'still here');
  await closeClient(before);
  await closeClient(after);
});

test('unchanged files: changed = false', async (t) => {
  const f = await setup(t);
  assert.deepEqual(await f.listener.reload(), { changed: false });
  f.pki.file('server.pem', f.pki.server.cert); // rewritten with the same bytes
  assert.deepEqual(await f.listener.reload(), { changed: false });
});

test('concurrent reloads share one pass', async (t) => {
  const f = await setup(t);
  const next = await issue(f.pki.ca, { cn: 'localhost', dns: ['localhost'], usage: ['server'] });
  f.pki.file('server.pem', next.cert);
  f.pki.file('server-key.pem', next.key);
  const [a, b] = await Promise.all([f.listener.reload(), f.listener.reload()]);
  assert.deepEqual(a, { changed: true });
  assert.equal(a, b);
});

test('bad files keep the old context and say why', async (t) => {
  const f = await setup(t);
  const oldPrint = f.listener.tls.certificates.server[0]?.fingerprint256;
  const other = await issue(f.pki.ca, { cn: 'localhost', dns: ['localhost'], usage: ['server'] });
  const expired = await issue(f.pki.ca, { cn: 'localhost', dns: ['localhost'], usage: ['server'], notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
  const cases: Array<[string, () => void, RegExp]> = [
    ['garbage cert', () => { f.pki.file('server.pem', 'not a certificate'); }, /listeners\.edge\.tls\.cert: no PEM certificate/],
    ['truncated cert', () => { f.pki.file('server.pem', f.pki.server.cert.slice(0, 200) + f.pki.server.cert.slice(-30)); }, /listeners\.edge\.tls\.cert: certificate #1 does not parse/],
    ['key of another cert', () => { f.pki.file('server.pem', other.cert); }, /listeners\.edge\.tls\.key: private key does not match/],
    ['garbage key', () => { f.pki.file('server.pem', other.cert); f.pki.file('server-key.pem', 'nope'); }, /listeners\.edge\.tls\.key: private key does not parse/],
    ['expired cert', () => { f.pki.file('server.pem', expired.cert); f.pki.file('server-key.pem', expired.key); }, /expired at/],
    ['CA file without a CA', () => {
      f.pki.file('server.pem', f.pki.server.cert);
      f.pki.file('server-key.pem', f.pki.server.key);
      f.pki.file('ca.pem', other.cert);
    }, /listeners\.edge\.tls\.client_ca: certificate #1 .* is not a CA/],
    ['missing file', () => { f.pki.file('ca.pem', f.pki.ca.cert); f.pki.cleanup(); }, /listeners\.edge\.tls\.\w+: cannot read .*ENOENT/],
  ];
  for (const [what, breakIt, why] of cases) {
    breakIt();
    const result = await f.listener.reload();
    assert.equal(result.changed, false, what);
    assert.match(result.error ?? '', why, what);
    assert.equal(f.listener.tls.certificates.server[0]?.fingerprint256, oldPrint, what);
  }
  // The listener still serves with the original material (the CA text is still in memory).
  const socket = await open(f);
  assert.equal(fingerprint(socket), oldPrint);
  assert.equal(await echo(socket, 'ok'), 'ok');
  await closeClient(socket);
});

test('a new client CA applies to new handshakes, and old sessions do not resume past it', async (t) => {
  const f = await setup(t);
  // TLS 1.2 makes the session available before the handshake completes; 1.3 tickets come later.
  const first = await open(f, { maxVersion: 'TLSv1.2' });
  const session = first.getSession();
  assert.ok(session);
  await closeClient(first);
  const resumed = await open(f, { maxVersion: 'TLSv1.2', session });
  assert.equal(resumed.isSessionReused(), true, 'sessions resume before the reload');
  await closeClient(resumed);

  const newCa = await createAuthority('new client CA');
  const newClient = await issue(newCa, { cn: 'new-client', usage: ['client'] });
  f.pki.file('ca.pem', newCa.cert);
  assert.deepEqual(await f.listener.reload(), { changed: true });

  const refused = await new Promise<string>((resolve) => {
    let body = '';
    const socket = connect({
      host: '127.0.0.1', port: f.port, servername: 'localhost', ca: f.pki.ca.cert, maxVersion: 'TLSv1.2', session,
      cert: f.pki.client.cert, key: f.pki.client.key,
    });
    socket.on('secureConnect', () => { socket.write('hello?'); });
    socket.on('data', (chunk: Buffer) => { body += chunk.toString(); });
    socket.on('error', () => {});
    socket.on('close', () => { resolve(body); });
  });
  assert.equal(refused, '', 'a client of the old CA gets nothing, resumed session or not');

  const fresh = await open(f, { cert: newClient.cert, key: newClient.key });
  assert.equal(await echo(fresh, 'new'), 'new');
  await closeClient(fresh);
});
