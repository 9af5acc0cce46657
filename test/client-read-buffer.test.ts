// Client sockets read into one buffer shared by every client connection (src/net/client-reads.ts):
// a request body chunk is a view of it, overwritten by the next read of any client. Whatever
// the proxy keeps past a read must be a copy: body bytes waiting for an upstream connection,
// a body kept for a replay, pipelined requests held until the response before them is out,
// and body writes queued behind an upstream write in flight. Each test here builds bodies
// whose every read differs from the one before, and makes some other read overwrite the
// buffer before the kept bytes are used: a view kept instead of a copy arrives corrupted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { proxyFixture } from './support/fixture.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { clientAgent, rawExchange, request, startProxy } from './support/proxy.ts';
import { startUpstream } from './support/upstream.ts';
import { sharedReadsAvailable } from '../src/net/client-reads.ts';
import { writerStats } from '../src/net/socket-writer.ts';
import { block, SIZES } from './support/blocks.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('client sockets read into the shared buffer on this Node (MTLS_PROXY_NO_SHARED_READS unset)', () => {
  // If a Node upgrade moves net.Socket's onread fields, the proxy falls back to a Buffer per
  // read (it still works) and this fails, so the memory saving is not lost unnoticed.
  assert.equal(sharedReadsAvailable(), true);
});

/** An mTLS origin that reads request bodies slowly (pauses every 40th read), answering sha256 and length. */
async function slowReadingOrigin(pki: TestPki): Promise<{ port: number; close(): Promise<void> }> {
  const server = https.createServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const hash = createHash('sha256');
    let n = 0;
    let reads = 0;
    req.on('data', (d: Buffer) => {
      hash.update(d);
      n += d.length;
      if (++reads % 40 === 0) {
        req.pause();
        setTimeout(() => req.resume(), 30);
      }
    });
    req.on('end', () => {
      const body = JSON.stringify({ sha256: hash.digest('hex'), length: n });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

for (const framing of ['chunked', 'content-length'] as const) {
  test(`${framing} upload to an upstream that reads slowly: every byte intact, queued writes copied`, async (t) => {
    const pki = await makeTestPki();
    const origin = await slowReadingOrigin(pki);
    const proxy = await startProxy(pki, origin.port);
    const agent = clientAgent(pki);
    t.after(async () => {
      agent.destroy();
      await proxy.stop();
      await origin.close();
      pki.cleanup();
    });
    const BLOCKS = 400; // ~11 MiB
    const blocks: Buffer[] = [];
    const hash = createHash('sha256');
    let total = 0;
    for (let i = 0; i < BLOCKS; i++) {
      const b = block(i, SIZES[i % SIZES.length]!);
      hash.update(b);
      blocks.push(b);
      total += b.length;
    }
    const expected = hash.digest('hex');
    const before = writerStats();
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const headers: Record<string, string> = framing === 'chunked' ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(total) };
      const req = https.request({ host: '127.0.0.1', port: proxy.port, method: 'PUT', path: '/upload', servername: 'localhost', agent, headers }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
        res.on('error', reject);
      });
      req.on('error', reject);
      let i = 0;
      const pump = (): void => {
        while (i < blocks.length) {
          if (!req.write(blocks[i++])) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
    assert.equal(answer.status, 200, answer.body);
    const seen = JSON.parse(answer.body) as { sha256: string; length: number };
    assert.equal(seen.length, total);
    assert.equal(seen.sha256, expected);
    // the origin's pauses backed the proxy's upstream writes up: the chunks that came behind a
    // write in flight were copied into the writer's buffer, not kept as views of the shared one
    const after = writerStats();
    assert.ok(after.copies - before.copies > 100, `only ${after.copies - before.copies} copies: the upstream never fell behind`);
  });
}

test('a body that arrives before its upstream connection exists, replayable (PUT): intact', async (t) => {
  // A relay that holds each new upstream connection back 300 ms: the request's head and body
  // are read (and the socket paused) while the proxy connects, and other clients' reads go
  // through the shared buffer meanwhile.
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const relay = net.createServer((c) => {
    c.pause();
    setTimeout(() => {
      const o = net.connect(up.port, '127.0.0.1');
      c.pipe(o).pipe(c);
      c.resume();
      c.on('error', () => o.destroy());
      o.on('error', () => c.destroy());
    }, 300);
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  const proxy = await startProxy(pki, (relay.address() as net.AddressInfo).port);
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    relay.close();
    await up.close();
    pki.cleanup();
  });
  const bodies = [0, 1, 2].map((i) => Buffer.concat([block(10 + i, 30000), block(20 + i, 200000)]));
  // three at once, each on its own client connection and its own new upstream connection
  const answers = await Promise.all(bodies.map((b, i) => request(proxy.port, agent, 'PUT', `/put/${i}`, b)));
  for (let i = 0; i < 3; i++) {
    assert.equal(answers[i]!.status, 200, answers[i]!.body.toString());
    const seen = JSON.parse(answers[i]!.body.toString()) as { url: string; sha256: string; bodyLength: number };
    assert.equal(seen.url, `/put/${i}`);
    assert.equal(seen.bodyLength, bodies[i]!.length);
    assert.equal(seen.sha256, sha(bodies[i]!));
  }
});

test('a replayed body (the keep-alive race, retried once) is the body the client sent', async (t) => {
  const { up, proxy, agent, pki } = await proxyFixture(t);
  // the first PUT's connection is cut by the upstream after it read the request, 200 ms late:
  // meanwhile another client's request goes through the shared read buffer
  let cut = 0;
  up.handlers.set('/flaky', (req, res) => {
    if (cut++ === 0) setTimeout(() => req.socket.destroy(), 200);
    else res.end('ok');
  });
  const warm = await request(proxy.port, agent, 'GET', '/warm');
  assert.equal(warm.status, 200); // a pooled connection now exists: the PUT reuses it
  const body = Buffer.concat([block(7, 3000), block(8, 9000)]);
  const other = clientAgent(pki, false);
  t.after(() => other.destroy());
  const put = request(proxy.port, agent, 'PUT', '/flaky', body);
  await new Promise((r) => setTimeout(r, 80));
  const noise = await request(proxy.port, other, 'POST', '/noise', block(99, 12000));
  assert.equal(noise.status, 200);
  const r = await put;
  assert.equal(r.status, 200, r.body.toString());
  assert.equal(r.body.toString(), 'ok');
  const flaky = up.seen.filter((s) => s.url === '/flaky');
  assert.equal(flaky.length, 2, 'the PUT went upstream twice (the retry)');
  assert.equal(flaky[1]!.bodyLength, body.length);
  assert.equal(flaky[1]!.sha256, sha(body));
});

test('pipelined requests with bodies, held while the one before is answered: each body intact, in order', async (t) => {
  const { up, proxy, pki } = await proxyFixture(t);
  // the first response is slow, so everything after it is read, held and pushed back meanwhile
  up.handlers.set('/slow', (_req, res) => setTimeout(() => res.end('slow'), 150));
  const N = 24;
  const bodies = Array.from({ length: N }, (_, i) => block(100 + i, 1000 + 997 * i));
  const parts: Buffer[] = [Buffer.from('GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n')];
  for (let i = 0; i < N; i++) {
    const last = i === N - 1 ? 'Connection: close\r\n' : '';
    parts.push(Buffer.from(`POST /p/${i} HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${bodies[i]!.length}\r\n${last}\r\n`), bodies[i]!);
  }
  // a pooled upstream connection first: the requests are then read on at once (not paused
  // while connecting), and a read that comes during /slow is pushed back into the socket
  const other = clientAgent(pki, false);
  t.after(() => other.destroy());
  assert.equal((await request(proxy.port, other, 'GET', '/warm')).status, 200);
  const exchange = rawExchange(proxy.port, pki, Buffer.concat(parts), 8000);
  // another client's body goes through the shared buffer while those requests are held
  await new Promise((r) => setTimeout(r, 60));
  const noise = await request(proxy.port, other, 'POST', '/noise', block(99, 60000));
  assert.equal(noise.status, 200);
  const out = await exchange;
  const hashes = [...out.matchAll(/"sha256":"([0-9a-f]{64})"/g)].map((m) => m[1]);
  assert.deepEqual(hashes, bodies.map(sha));
  assert.deepEqual(up.seen.map((s) => s.url).filter((u) => u !== '/noise' && u !== '/warm'), ['/slow', ...bodies.map((_, i) => `/p/${i}`)]);
});

test('bytes sent right after the handshake, before the proxy set up its reads, come first', async (t) => {
  const { up, proxy, pki } = await proxyFixture(t);
  // head and a 100 KiB body written together with the handshake's end: the first records may
  // be taken in before the shared buffer is in place, the rest after; order must hold
  const body = block(5, 100 * 1024);
  const answer = await new Promise<string>((resolve, reject) => {
    const s: TLSSocket = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
    s.write(Buffer.concat([Buffer.from(`POST /early HTTP/1.1\r\nHost: localhost\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`), body]));
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('close', () => resolve(Buffer.concat(parts).toString('latin1')));
    s.on('error', reject);
  });
  assert.match(answer, /^HTTP\/1\.1 200/);
  assert.equal(up.seen.at(-1)!.sha256, sha(body));
});
