// Upstream sockets read into one reused buffer per connection (Node's `onread`): a body chunk
// is a view of it, overwritten by the next read. While the client socket still has a write in
// flight, a chunk it would queue must be a copy. These responses are built so every read
// differs from the one before, and the client pauses so the proxy's writes back up: a view
// queued instead of a copy would arrive overwritten by later bytes, and a writer buffer
// reused before TLS took its bytes in (src/net/socket-writer.ts) likewise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import https from 'node:https';
import type { ServerResponse } from 'node:http';
import { proxyFixture } from './support/fixture.ts';
import { UpstreamReads, type UpstreamConnection } from '../src/pool/connection.ts';
import { writerStats } from '../src/net/socket-writer.ts';
import { block, SIZES } from './support/blocks.ts';

function send(res: ServerResponse, blocks: number): string {
  const hash = createHash('sha256');
  const parts: Buffer[] = [];
  for (let i = 0; i < blocks; i++) {
    const b = block(i, SIZES[i % SIZES.length]!);
    hash.update(b);
    parts.push(b);
  }
  let i = 0;
  const pump = (): void => {
    while (i < parts.length) {
      if (!res.write(parts[i++])) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
  return hash.digest('hex');
}

/** GET `path` through the proxy, stalling 30 ms every 40th read: the body's length, sha256 and framing. */
function fetchSlowly(port: number, agent: https.Agent, path: string, headers: Record<string, string> = {}): Promise<{ received: number; sha256: string; framingSeen: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, servername: 'localhost', path, agent, headers }, (res) => {
      const hash = createHash('sha256');
      let n = 0;
      let reads = 0;
      res.on('data', (d: Buffer) => {
        hash.update(d);
        n += d.length;
        // the proxy's client socket backs up meanwhile
        if (++reads % 40 === 0) {
          res.pause();
          setTimeout(() => res.resume(), 30);
        }
      });
      res.on('end', () => resolve({ received: n, sha256: hash.digest('hex'), framingSeen: String(res.headers['transfer-encoding'] ?? 'length') }));
      res.on('error', reject);
      res.on('aborted', () => reject(new Error(`aborted after ${n} bytes`)));
    });
    req.on('error', reject);
    req.end();
  });
}

for (const framing of ['chunked', 'content-length'] as const) {
  test(`${framing} response to a client that pauses now and then: every byte intact`, async (t) => {
    const { up, proxy, agent } = await proxyFixture(t);
    const BLOCKS = 600; // ~16 MiB
    let total = 0;
    for (let i = 0; i < BLOCKS; i++) total += SIZES[i % SIZES.length]!;
    let expected = '';
    up.handlers.set('/stream', (_req, res) => {
      // chunked: node:http writes one chunk per write(), each parsed by the proxy's llhttp
      res.writeHead(200, framing === 'chunked' ? { 'transfer-encoding': 'chunked' } : { 'content-length': total });
      expected = send(res, BLOCKS);
    });
    const before = writerStats();
    const { received, sha256, framingSeen } = await fetchSlowly(proxy.port, agent, '/stream');
    assert.equal(framingSeen, framing === 'chunked' ? 'chunked' : 'length');
    assert.equal(received, total);
    assert.equal(sha256, expected);
    // the chunks that came behind a write in flight were coalesced: copied into a reused
    // buffer and written a buffer at a time, far fewer writes than chunks; buffers allocated
    // once (one small, one big at most), and every one back once the client has it all
    const after = writerStats();
    const copies = after.copies - before.copies;
    const flushes = after.flushes - before.flushes;
    const made = after.made - before.made;
    assert.ok(copies > 200, `only ${copies} copies: the client never fell behind`);
    assert.ok(flushes * 3 < copies, `${flushes} flushes for ${copies} copies`);
    assert.ok(made <= 2, `${made} buffers allocated ${JSON.stringify([before, after])}`);
    for (let i = 0; i < 100 && writerStats().inUse > 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(writerStats().inUse, 0, 'a writer buffer never came back');
  });
}

test('bytes an upstream sends before its connection is set up mark the connection dead', () => {
  const early = new UpstreamReads();
  early.buffer.write('HTTP/1.1 200 OK\r\n\r\n', 'latin1');
  early.callback(19, early.buffer);
  assert.equal(early.attach({} as UpstreamConnection), false);
  const quiet = new UpstreamReads();
  assert.equal(quiet.attach({} as UpstreamConnection), true);
});

test('Connection: close to a client that is behind: the bytes still held back at the end go out before the FIN', { timeout: 60_000 }, async (t) => {
  // The response ends (and the proxy closes the connection, as asked) while the client's
  // writer still holds its last bytes behind a write in flight: they must be handed to the
  // socket before its end(), or the client sees a cut body.
  const { up, proxy, agent } = await proxyFixture(t);
  const BLOCKS = 300; // ~8 MiB
  let total = 0;
  for (let i = 0; i < BLOCKS; i++) total += SIZES[i % SIZES.length]!;
  let expected = '';
  up.handlers.set('/close', (_req, res) => {
    res.writeHead(200, { 'content-length': total });
    expected = send(res, BLOCKS);
  });
  for (let attempt = 0; attempt < 3; attempt++) {
    const { received, sha256 } = await fetchSlowly(proxy.port, agent, '/close', { connection: 'close' });
    assert.equal(received, total);
    assert.equal(sha256, expected);
  }
});
