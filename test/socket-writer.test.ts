// SocketWriter (src/net/socket-writer.ts) over real sockets: what arrives is exactly what was
// written, in order, though every view is overwritten right after write() returns; bytes that
// come while a write is in flight leave coalesced; a peer that stops reading pauses the source
// at the limit and onDrain resumes it; writes around the writer keep their place after settle().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { makeTestPki } from './support/pki.ts';
import { block, SIZES } from './support/blocks.ts';
import { SocketWriter, WRITE_LIMIT, writerStats } from '../src/net/socket-writer.ts';

interface Pair {
  /** The side the writer writes to. */
  server: net.Socket;
  client: net.Socket;
  close(): void;
}

async function tlsPair(): Promise<Pair> {
  const pki = await makeTestPki();
  const srv = tls.createServer({ cert: pki.server.cert, key: pki.server.key });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  const accepted = new Promise<TLSSocket>((r) => srv.once('secureConnection', r));
  const client = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: pki.ca.cert });
  await new Promise<void>((r, j) => client.once('secureConnect', r).once('error', j));
  const server = await accepted;
  return {
    server,
    client,
    close: () => {
      client.destroy();
      server.destroy();
      srv.close();
      pki.cleanup();
    },
  };
}

async function plainPair(): Promise<Pair> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise<void>((r) => client.once('connect', r));
  const server = await accepted;
  return { server, client, close: () => { client.destroy(); server.destroy(); srv.close(); } };
}

/** Everything the client receives until `bytes` arrived: its sha256. */
function receive(client: net.Socket, bytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let n = 0;
    const onData = (d: Buffer): void => {
      hash.update(d);
      n += d.length;
      if (n >= bytes) {
        client.off('data', onData);
        assert.equal(n, bytes, 'more bytes than written');
        resolve(hash.digest('hex'));
      }
    };
    client.on('data', onData);
    client.once('error', reject);
  });
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A SocketWriter whose onDrain resolves `drained()`. */
function writerOn(socket: net.Socket): { w: SocketWriter; drained: () => Promise<void> } {
  let wake: (() => void) | null = null;
  const w = new SocketWriter(socket as TLSSocket, () => {
    wake?.();
    wake = null;
  });
  return { w, drained: () => new Promise<void>((r) => (wake = r)) };
}

/**
 * Writes `count` blocks through `w` in bursts of `burst` per event-loop turn, each from one
 * scratch buffer overwritten right after write() returns, every 7th as latin1 text; waits for
 * onDrain when write() says so. Returns the expected sha256 and byte count.
 */
async function writeBlocks(wd: ReturnType<typeof writerOn>, count: number, burst: number): Promise<{ sha: string; bytes: number }> {
  const { w, drained } = wd;
  const scratch = Buffer.alloc(100000);
  const hash = createHash('sha256');
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    if (i % 7 === 3) {
      const s = `${i.toString(16)}\r\nline ${i}\r\n`;
      hash.update(s, 'latin1');
      bytes += s.length;
      if (!w.writeLatin1(s)) await drained();
    } else {
      const b = block(i, SIZES[i % SIZES.length]!);
      hash.update(b);
      bytes += b.length;
      b.copy(scratch);
      const ok = w.write(scratch.subarray(0, b.length));
      scratch.fill(0xee); // what a reused read buffer does to a view kept past write()
      if (!ok) await drained();
    }
    if (i % burst === burst - 1) await tick();
  }
  return { sha: hash.digest('hex'), bytes };
}

for (const kind of ['tls', 'plain'] as const) {
  test(`${kind}: views overwritten right after write() arrive intact and in order`, { timeout: 30_000 }, async (t) => {
    const pair = kind === 'tls' ? await tlsPair() : await plainPair();
    t.after(pair.close);
    const before = writerStats();
    const wd = writerOn(pair.server);
    // 30 bursts of 20 blocks, ~8 MiB, each burst well under the limit
    let total = 0;
    for (let i = 0; i < 600; i++) total += i % 7 === 3 ? `${i.toString(16)}\r\nline ${i}\r\n`.length : SIZES[i % SIZES.length]!;
    const arriving = receive(pair.client, total);
    const sent = await writeBlocks(wd, 600, 20);
    assert.equal(sent.bytes, total);
    assert.equal(await arriving, sent.sha);
    const after = writerStats();
    const copies = after.copies - before.copies;
    const flushes = after.flushes - before.flushes;
    assert.ok(copies > 400, `only ${copies} of 600 writes waited behind a write in flight`);
    if (kind === 'tls') {
      // a burst's writes after the first leave as one write: about one flush per burst
      assert.ok(flushes <= 60, `${flushes} flushes for ${copies} copies in 30 bursts`);
      assert.equal(after.handed - before.handed, 0, 'an idle TLS socket takes a flush in at once');
    } else {
      // a plain socket keeps a reference to what it is given: never a buffer reused
      assert.equal(after.handed - before.handed, flushes);
    }
  });
}

test('tls: a peer that stops reading stops the source at the limit; onDrain resumes it; nothing lost', { timeout: 30_000 }, async (t) => {
  const pair = await tlsPair();
  t.after(pair.close);
  let drains = 0;
  let onDrain: () => void = () => {};
  const w = new SocketWriter(pair.server as TLSSocket, () => {
    drains++;
    onDrain();
  });
  pair.client.pause();
  const scratch = Buffer.alloc(16384);
  const hash = createHash('sha256');
  let i = 0;
  let written = 0;
  /** Writes 16 KiB blocks until write() says stop; returns how many it wrote. */
  const pump = (): number => {
    let n = 0;
    for (;;) {
      const b = block(i++, 16384);
      hash.update(b);
      b.copy(scratch);
      written += b.length;
      n++;
      const ok = w.write(scratch);
      scratch.fill(0);
      if (!ok) return n;
      assert.ok(n < 10000, 'write() never said stop');
    }
  };
  // the first write goes straight in; the rest wait behind it until the buffer is full
  const first = pump();
  assert.ok(first * 16384 >= WRITE_LIMIT, `stopped after ${first} blocks`);
  assert.ok(first * 16384 <= WRITE_LIMIT + 2 * 16384, `went on for ${first} blocks`);
  assert.ok(w.held >= WRITE_LIMIT - 16384);
  // The peer reads nothing. Each onDrain (the kernel's socket buffers took what was held)
  // fills the buffer again, until those buffers are full too and no onDrain comes.
  onDrain = () => pump();
  const settled = async (): Promise<number> => {
    for (;;) {
      const seen = written;
      await new Promise((r) => setTimeout(r, 200));
      if (written === seen) return written;
    }
  };
  const stalled = await settled();
  assert.ok(w.held >= WRITE_LIMIT - 16384, `${w.held} bytes held while stalled`);
  assert.ok(stalled < 64 * 1024 * 1024, `${stalled} bytes taken in by a peer that reads nothing`);
  const drainsStalled = drains;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(drains, drainsStalled, 'onDrain while the peer still reads nothing');
  assert.equal(written, stalled);
  // the peer reads: onDrain comes again; three more fills, then everything arrives intact
  let rounds = 0;
  const done = new Promise<void>((resolve) => {
    onDrain = () => {
      if (++rounds <= 3) pump();
      else resolve();
    };
  });
  const arriving = new Promise<string>((resolve) => {
    const h = createHash('sha256');
    let n = 0;
    pair.client.on('data', (d: Buffer) => {
      h.update(d);
      n += d.length;
      if (rounds > 3 && n === written) resolve(h.digest('hex'));
    });
  });
  pair.client.resume();
  await done;
  assert.equal(await arriving, hash.digest('hex'));
});

test('tls: bytes written around the writer keep their place after settle(); a write larger than a buffer too', { timeout: 30_000 }, async (t) => {
  const pair = await tlsPair();
  t.after(pair.close);
  const w = new SocketWriter(pair.server as TLSSocket, () => {});
  const parts: Buffer[] = [];
  const scratch = Buffer.alloc(3 * 1024 * 1024);
  const via = (b: Buffer): void => {
    parts.push(b);
    b.copy(scratch);
    w.write(scratch.subarray(0, b.length));
    scratch.fill(1);
  };
  const around = (b: Buffer): void => {
    parts.push(b);
    w.settle();
    pair.server.write(b);
  };
  // a write of someone else's in flight first: the writer's bytes must wait behind it
  around(block(1, 200000));
  via(block(2, 5000));
  via(block(3, 16384));
  around(block(4, 10));
  via(block(5, 70000));
  // larger than the writer's biggest buffer: a copy of its own, after what is held
  via(block(6, 2 * 1024 * 1024));
  via(block(7, 3));
  await tick();
  via(block(8, 40000));
  // corked behind a write in flight: gathered in the buffer
  w.cork();
  via(block(9, 100));
  w.writeLatin1('1\r\n');
  parts.push(Buffer.from('1\r\n'));
  w.uncork();
  // corked on an idle socket: Node's cork, the views kept until uncork() (not overwritten before)
  while (pair.server.writableLength > 0) await tick();
  w.cork();
  for (const b of [block(11, 300), block(12, 20000)]) {
    parts.push(b);
    w.write(b);
  }
  w.writeLatin1('0\r\n\r\n');
  parts.push(Buffer.from('0\r\n\r\n'));
  w.uncork();
  around(block(10, 1));
  const expected = Buffer.concat(parts);
  const got = await receive(pair.client, expected.length);
  assert.equal(got, createHash('sha256').update(expected).digest('hex'));
});
