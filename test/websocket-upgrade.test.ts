// Upgrade through the proxy: a WebSocket handshake the upstream accepts (101) turns the two
// connections into a tunnel, relayed as they come until the upstream ends; anything else is
// never relayed unparsed. Raw TLS on both sides, so the tests see every byte each peer sent.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { Agent, WebSocket, type ErrorEvent } from 'undici';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { rawExchange, startProxy, type ProxyOptions, type TestProxy } from './support/proxy.ts';

const HANDSHAKE = 'GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
const SWITCHED = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nKeep-Alive: timeout=5\r\n\r\n';

interface OriginConn {
  /** The first request head, lower-cased. */
  head: string;
  /** Every byte after that head. */
  after: Buffer[];
  socket: tls.TLSSocket;
}

/** What the origin does with a connection's first head (lower-cased; `raw` as sent): `rest` is what came behind it. */
type Script = (head: string, s: tls.TLSSocket, rest: Buffer, raw: string) => void;

/** A raw mTLS origin: records each connection's first head and every byte after it. */
async function rawOrigin(t: TestContext, pki: TestPki, script: Script): Promise<{ port: number; conns: OriginConn[] }> {
  const conns: OriginConn[] = [];
  const server = tls.createServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true, allowHalfOpen: true }, (s) => {
    let buf = Buffer.alloc(0);
    let conn: OriginConn | null = null;
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      if (conn !== null) {
        conn.after.push(d);
        return;
      }
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      const rest = buf.subarray(end + 4);
      const raw = buf.toString('latin1', 0, end + 4);
      conn = { head: raw.toLowerCase(), after: rest.length ? [rest] : [], socket: s };
      conns.push(conn);
      script(conn.head, s, rest, raw);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const c of conns) c.socket.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port: (server.address() as AddressInfo).port, conns };
}

/** The origin side of a WebSocket: 101, a first message of its own, then an echo; FIN for FIN. */
const acceptAndEcho: Script = (head, s, rest) => {
  if (!head.includes('\r\nupgrade: websocket\r\n')) {
    s.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  s.write(`${SWITCHED}ORIGIN-FIRST`);
  if (rest.length) s.write(rest);
  s.on('data', (d: Buffer) => s.write(d));
  s.on('end', () => s.end());
};

interface Client {
  s: tls.TLSSocket;
  received(): Buffer;
  /** Until what came so far satisfies `done` (or fails after `ms`). */
  until(done: (b: Buffer) => boolean, ms?: number): Promise<Buffer>;
  ended: Promise<void>;
  closed: Promise<void>;
}

async function connect(t: TestContext, port: number, pki: TestPki): Promise<Client> {
  // allowHalfOpen: honoured by tls.connect, missing from @types/node's ConnectionOptions
  const options = { host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key, allowHalfOpen: true };
  const s = tls.connect(options as tls.ConnectionOptions);
  t.after(() => s.destroy());
  const parts: Buffer[] = [];
  const waiters = new Set<() => void>();
  s.on('data', (d: Buffer) => {
    parts.push(d);
    for (const w of waiters) w();
  });
  s.on('error', () => {});
  const ended = new Promise<void>((r) => s.once('end', r));
  const closed = new Promise<void>((r) => s.once('close', r));
  await new Promise<void>((r, j) => s.once('secureConnect', r).once('error', j));
  const received = (): Buffer => Buffer.concat(parts);
  const until = (done: (b: Buffer) => boolean, ms = 5000): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const b = received();
        if (!done(b)) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(b);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`timed out; received so far: ${JSON.stringify(received().toString('latin1').slice(0, 400))}`));
      }, ms);
      waiters.add(check);
      check();
    });
  return { s, received, until, ended, closed };
}

async function proxyFor(t: TestContext, pki: TestPki, port: number, opts: ProxyOptions = {}): Promise<TestProxy> {
  const proxy = await startProxy(pki, port, opts);
  t.after(() => proxy.stop());
  return proxy;
}

const headOf = (b: Buffer): string => b.toString('latin1', 0, b.indexOf('\r\n\r\n') + 4);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('a WebSocket handshake the upstream accepts becomes a tunnel: bytes behind both heads, echo, 1 MiB each way, half-close, one log row', { timeout: 30_000 }, async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const origin = await rawOrigin(t, pki, acceptAndEcho);
  const proxy = await proxyFor(t, pki, origin.port);
  const c = await connect(t, proxy.port, pki);

  // the client's first frame rides in the same write as its handshake
  c.s.write(`${HANDSHAKE}EARLY`);
  const first = await c.until((b) => b.includes('ORIGIN-FIRST') && b.includes('EARLY'));
  const head = headOf(first);
  assert.match(head, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  assert.match(head, /\r\nupgrade: websocket\r\n/);
  assert.match(head, /\r\nconnection: upgrade\r\n/);
  assert.match(head, /\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=\r\n/);
  assert.match(head, /\r\nx-request-id: [0-9a-f-]{36}\r\n/);
  assert.doesNotMatch(head, /keep-alive/i, 'hop-by-hop fields of the 101 are not passed on');
  assert.equal(first.toString('latin1', head.length), 'ORIGIN-FIRSTEARLY');

  // what the upstream was asked: the switch, and the proxy's identity headers
  const seen = origin.conns[0]!.head;
  assert.match(seen, /^get \/ws http\/1\.1\r\n/);
  assert.match(seen, /\r\nupgrade: websocket\r\n/);
  assert.match(seen, /\r\nconnection: upgrade\r\n/);
  assert.match(seen, /\r\nsec-websocket-key: dghlihnhbxbszsbub25jzq==\r\n/);
  assert.match(seen, /\r\nx-forwarded-client-cert: hash=[0-9a-f]{64};/);

  // 1 MiB through the tunnel and back: flow control both ways, nothing lost or reordered
  const big = createHash('sha512').update('ws').digest().toString('hex').repeat(8192).slice(0, 1 << 20);
  const before = c.received().length;
  c.s.write(big);
  const all = await c.until((b) => b.length >= before + big.length, 15_000);
  assert.equal(all.length, before + big.length);
  assert.equal(createHash('sha256').update(all.subarray(before)).digest('hex'), createHash('sha256').update(big).digest('hex'));

  // the client ends its side: the upstream sees the FIN, ends its own, and the client gets that
  c.s.end();
  await c.ended;
  await c.closed;
  await sleep(50);
  const rec = proxy.records.at(-1)!;
  assert.equal(proxy.records.length, 1);
  assert.equal(rec.status, 101);
  assert.equal(rec.error, null);
  assert.equal(rec.path, '/ws');
  assert.ok(rec.bytesIn >= HANDSHAKE.length + 5 + big.length, `bytes in: ${rec.bytesIn}`);
  assert.ok(rec.bytesOut >= 'ORIGIN-FIRST'.length + 5 + big.length, `bytes out: ${rec.bytesOut}`);
});

test('an upstream that declines the handshake answers as usual, the connection closes, and the bytes behind the head never reach it', { timeout: 15_000 }, async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const origin = await rawOrigin(t, pki, (_head, s) => s.write('HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno'));
  const proxy = await proxyFor(t, pki, origin.port);
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n';
  const out = await rawExchange(proxy.port, pki, HANDSHAKE + smuggled, 3000);
  assert.match(out, /^HTTP\/1\.1 403 Forbidden\r\n/);
  assert.match(out, /\r\nconnection: close\r\n/);
  assert.equal(out.match(/HTTP\/1\.1 /g)!.length, 1, 'one response, then the connection closed');
  await sleep(100);
  assert.equal(origin.conns.length, 1);
  assert.equal(Buffer.concat(origin.conns[0]!.after).length, 0, 'nothing behind the handshake reached the upstream');
  assert.equal(proxy.records.at(-1)!.status, 403);
});

test('an Upgrade other than websocket (h2c) is dropped: the upstream gets a plain request, and the connection closes after the answer', { timeout: 15_000 }, async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const origin = await rawOrigin(t, pki, (head, s) => s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${head.length}\r\n\r\n${head}`));
  const proxy = await proxyFor(t, pki, origin.port);
  const h2c = 'GET /h2 HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n';
  const out = await rawExchange(proxy.port, pki, `${h2c}PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, 3000);
  assert.match(out, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(out, /\r\nconnection: close\r\n/);
  const seen = origin.conns[0]!.head;
  assert.doesNotMatch(seen, /upgrade/);
  assert.doesNotMatch(seen, /http2-settings/);
  await sleep(100);
  assert.equal(Buffer.concat(origin.conns[0]!.after).length, 0, 'the HTTP/2 preface never reached the upstream');
});

test('a WebSocket handshake with a body, or a second Upgrade field, is not forwarded as one', { timeout: 15_000 }, async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  // one request per upstream connection (rawOrigin answers a connection's first head only)
  const origin = await rawOrigin(t, pki, (head, s) => s.end(`HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: ${head.length}\r\n\r\n${head}`));
  const proxy = await proxyFor(t, pki, origin.port);
  const withBody = 'POST /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 2\r\n\r\nhi';
  const twice = 'GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n';
  for (const req of [withBody, twice]) {
    const out = await rawExchange(proxy.port, pki, req, 3000);
    assert.match(out, /^HTTP\/1\.1 200 OK\r\n/);
    assert.doesNotMatch(origin.conns.at(-1)!.head, /upgrade/);
  }
});

test('a 101 the proxy did not ask for, to another protocol, or without Connection: upgrade is a 502 and never reaches the client', { timeout: 15_000 }, async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const answers = new Map<string, string>([
    ['/plain', SWITCHED],
    ['/other', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n'],
    ['/no-connection', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n'],
  ]);
  const origin = await rawOrigin(t, pki, (head, s) => s.write(`${answers.get(head.split(' ')[1]!)!}RAW`));
  const proxy = await proxyFor(t, pki, origin.port);
  const cases = [
    'GET /plain HTTP/1.1\r\nHost: localhost\r\n\r\n',
    HANDSHAKE.replace('/ws', '/other'),
    HANDSHAKE.replace('/ws', '/no-connection'),
  ];
  for (const req of cases) {
    const out = await rawExchange(proxy.port, pki, req, 3000);
    assert.match(out, /^HTTP\/1\.1 502 Bad Gateway\r\n/, req.split('\r\n')[0]);
    assert.doesNotMatch(out, /101|RAW/);
    assert.equal(proxy.records.at(-1)!.error, 'MTLS_ERR_UPSTREAM_BAD_RESPONSE');
  }
  assert.equal(origin.conns.length, 3);
});

test('a tunnel with no bytes either way for timeouts.idle is closed on both sides', { timeout: 15_000 }, async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const origin = await rawOrigin(t, pki, acceptAndEcho);
  const proxy = await proxyFor(t, pki, origin.port, { upstream: { timeouts: { idle: '400ms' } } });
  const c = await connect(t, proxy.port, pki);
  c.s.write(HANDSHAKE);
  await c.until((b) => b.includes('ORIGIN-FIRST'));
  c.s.write('ping');
  await c.until((b) => b.toString('latin1').endsWith('ping'));
  const t0 = performance.now();
  await c.ended; // the proxy closed the connection (the client, half-open, stays open for writing)
  const waited = performance.now() - t0;
  assert.ok(waited >= 300 && waited < 3000, `closed after ${waited} ms`);
  await sleep(50);
  assert.ok(origin.conns[0]!.socket.destroyed || origin.conns[0]!.socket.readableEnded, 'the upstream connection is gone too');
  const rec = proxy.records.at(-1)!;
  assert.equal(rec.status, 101);
  assert.equal(rec.error, 'MTLS_ERR_UPSTREAM_IDLE_TIMEOUT');
});


/** A real WebSocket origin (RFC 6455 §4.2.2, §5.2): the handshake's accept key, then each message echoed; a close answered and the connection ended. */
const websocketEcho: Script = (_head, s, rest, raw) => {
  const key = /\r\nsec-websocket-key: *([^\r]+)\r\n/i.exec(raw)![1]!;
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  s.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = rest;
  const frames = (d: Buffer): void => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1]! & 127;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      if (buf.length < off + 4 + len) return;
      const mask = buf.subarray(off, off + 4);
      const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
      for (let i = 0; i < len; i++) payload[i] = payload[i]! ^ mask[i & 3]!;
      const opcode = buf[0]! & 15;
      buf = buf.subarray(off + 4 + len);
      let header: Buffer;
      if (len < 126) header = Buffer.from([0x80 | opcode, len]);
      else if (len < 65536) header = Buffer.from([0x80 | opcode, 126, len >> 8, len & 255]);
      else {
        header = Buffer.alloc(10);
        header[0] = 0x80 | opcode;
        header[1] = 127;
        header.writeBigUInt64BE(BigInt(len), 2);
      }
      s.write(Buffer.concat([header, payload]));
      if (opcode === 8) s.end(); // close: echoed, then the TCP connection ends (§5.5.1)
    }
  };
  s.on('data', frames);
  s.on('end', () => s.end());
};

test("a real WebSocket client (undici's) through the proxy: open, a short and a 100 KiB message echoed, a clean close", { timeout: 20_000 }, async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const origin = await rawOrigin(t, pki, websocketEcho);
  const proxy = await proxyFor(t, pki, origin.port);
  const dispatcher = new Agent({ connect: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key, servername: 'localhost' } });
  t.after(() => dispatcher.close());
  const ws = new WebSocket(`wss://127.0.0.1:${proxy.port}/chat?room=1`, { dispatcher });
  const messages: string[] = [];
  const opened = new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', (e) => reject(new Error(`websocket error: ${(e as ErrorEvent).message}`)));
  });
  const closed = new Promise<{ code: number; wasClean: boolean }>((resolve) => ws.addEventListener('close', (e) => resolve({ code: e.code, wasClean: e.wasClean })));
  const next = (): Promise<string> => new Promise((resolve) => ws.addEventListener('message', (e) => resolve(String(e.data)), { once: true }));
  ws.addEventListener('message', (e) => messages.push(String(e.data)));
  await opened;
  let got = next();
  ws.send('hello through mTLS');
  assert.equal(await got, 'hello through mTLS');
  const big = 'x'.repeat(100 * 1024);
  got = next();
  ws.send(big);
  assert.equal(await got, big);
  ws.close(1000, 'done');
  const end = await closed;
  assert.equal(end.code, 1000);
  assert.equal(end.wasClean, true);
  assert.deepEqual(messages.map((m) => m.length), [18, 100 * 1024]);
  assert.match(origin.conns[0]!.head, /^get \/chat\?room=1 http\/1\.1\r\n/);
  for (let i = 0; i < 50 && proxy.records.length === 0; i++) await sleep(20);
  assert.equal(proxy.records.at(-1)!.status, 101);
});

test('websocket = false on the listener: the handshake goes up as a plain request, and the connection closes after the answer', { timeout: 15_000 }, async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const origin = await rawOrigin(t, pki, acceptAndEcho);
  const proxy = await proxyFor(t, pki, origin.port, { listener: { websocket: false } });
  const out = await rawExchange(proxy.port, pki, `${HANDSHAKE}EARLY`, 3000);
  // the origin, not asked to switch, refuses (acceptAndEcho answers a head without Upgrade with 400)
  assert.match(out, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.match(out, /\r\nconnection: close\r\n/);
  assert.doesNotMatch(origin.conns[0]!.head, /upgrade/);
  await sleep(100);
  assert.equal(Buffer.concat(origin.conns[0]!.after).length, 0, 'nothing behind the handshake reached the upstream');
});

test('a drain (SIGTERM) lets an open tunnel run until it ends, then finishes without waiting for drain_timeout', { timeout: 20_000 }, async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const origin = await rawOrigin(t, pki, acceptAndEcho);
  const proxy = await startProxy(pki, origin.port, { server: { drain_timeout: '10s' } });
  const c = await connect(t, proxy.port, pki);
  c.s.write(HANDSHAKE);
  await c.until((b) => b.includes('ORIGIN-FIRST'));
  const t0 = performance.now();
  const drained = proxy.stop();
  await sleep(100);
  c.s.write('still-here');
  await c.until((b) => b.toString('latin1').endsWith('still-here'));
  c.s.end();
  await drained;
  const took = performance.now() - t0;
  assert.ok(took < 5000, `the drain ended with the tunnel, after ${Math.round(took)} ms`);
  assert.equal(proxy.records.at(-1)!.status, 101);
  assert.equal(proxy.records.at(-1)!.error, null);
});
