// A Content-Length response's head is held only while the upstream chunk it came in is being
// handled (Exchange #writeHeldHead): a small response all in one chunk leaves as one write,
// anything else as the head then the body. Whatever way the upstream splits head and body,
// the client gets them intact, and gets the head without waiting for a body still to come.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { startProxy, type TestProxy } from './support/proxy.ts';

/** Responses by path: pieces written with `gapMs` between them. */
type Script = { pieces: (string | Buffer)[]; gapMs: number };

const BIG = Buffer.alloc(40_000, 'b');

function script(path: string): Script {
  const head = (n: number): string => `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${n}\r\n\r\n`;
  switch (path) {
    case '/one-chunk':
      return { pieces: [head(5) + 'hello'], gapMs: 0 };
    case '/head-then-body':
      return { pieces: [head(5), 'hello'], gapMs: 400 };
    case '/head-part-rest':
      return { pieces: [head(10) + 'hel', 'lo-world'], gapMs: 100 };
    case '/near-16k':
    case '/16k': {
      // one TLS record from the upstream: head + body 16 KiB, or 200 bytes less (with the
      // proxy's x-request-id the first is over the one-write size, the second under it)
      const size = path === '/16k' ? 16 * 1024 : 16 * 1024 - 200;
      const n = size - head(10000).length;
      return { pieces: [head(n) + 'e'.repeat(n)], gapMs: 0 };
    }
    case '/big':
      return { pieces: [Buffer.concat([Buffer.from(head(BIG.length)), BIG])], gapMs: 0 };
    default:
      return { pieces: ['HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n'], gapMs: 0 };
  }
}

async function rawUpstream(pki: TestPki): Promise<{ port: number; close(): Promise<void> }> {
  const server = tls.createServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true }, (s) => {
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        const path = /^[A-Z]+ (\S+)/.exec(buf)![1]!;
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        const { pieces, gapMs } = script(path);
        void (async () => {
          for (let i = 0; i < pieces.length; i++) {
            if (i > 0) await sleep(gapMs);
            s.write(pieces[i]!);
          }
        })();
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => server.close(() => { r(); })),
  };
}

/** One keep-alive client connection; get() sends a request and resolves its raw response. */
function client(proxy: TestProxy, pki: TestPki): { get(path: string, onHead?: () => void): Promise<{ head: string; body: Buffer }>; close(): void } {
  const s = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
  s.on('error', () => {});
  let buf = Buffer.alloc(0);
  let waiter: (() => void) | null = null;
  s.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    waiter?.();
  });
  return {
    async get(path, onHead) {
      s.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end >= 0) {
          const head = buf.subarray(0, end).toString('latin1');
          const length = Number(/content-length: (\d+)/i.exec(head)![1]);
          onHead?.();
          onHead = undefined;
          if (buf.length >= end + 4 + length) {
            const body = Buffer.from(buf.subarray(end + 4, end + 4 + length));
            buf = buf.subarray(end + 4 + length);
            return { head, body };
          }
        }
        await new Promise<void>((r) => (waiter = r));
        waiter = null;
      }
    },
    close: () => s.destroy(),
  };
}

/** The scripted upstream, a proxy in front of it and one client connection, torn down after `t`. */
async function fixture(t: TestContext): Promise<{ proxy: TestProxy; c: ReturnType<typeof client> }> {
  const pki = await makeTestPki();
  const up = await rawUpstream(pki);
  const proxy = await startProxy(pki, up.port);
  const c = client(proxy, pki);
  t.after(async () => {
    c.close();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  return { proxy, c };
}

test('a Content-Length response reaches the client intact however the upstream splits it', async (t) => {
  const { proxy, c } = await fixture(t);
  const one = await c.get('/one-chunk');
  assert.match(one.head, /^HTTP\/1\.1 200 OK\r\n/);
  assert.match(one.head, /x-request-id: /);
  assert.equal(one.body.toString(), 'hello');
  const part = await c.get('/head-part-rest');
  assert.equal(part.body.toString(), 'hello-worl');
  for (const path of ['/near-16k', '/16k']) {
    const r = await c.get(path);
    assert.ok(r.body.length > 15_000, path);
    assert.ok(r.body.every((b) => b === 0x65), path);
  }
  const big = await c.get('/big');
  assert.ok(big.body.equals(BIG));
  // and the same connection still carries a one-chunk response after all that
  assert.equal((await c.get('/one-chunk')).body.toString(), 'hello');
  assert.equal(proxy.records.filter((r) => r.status === 200).length, 6);
});

test('the head goes to the client at once when the body comes in a later upstream chunk', async (t) => {
  const { c } = await fixture(t);
  const t0 = performance.now();
  let headAt = 0;
  const r = await c.get('/head-then-body', () => (headAt = performance.now() - t0));
  const doneAt = performance.now() - t0;
  assert.equal(r.body.toString(), 'hello');
  // the upstream waits 400 ms between head and body
  assert.ok(doneAt >= 380, `body after the upstream's gap (${doneAt.toFixed(0)} ms)`);
  assert.ok(headAt < doneAt - 250, `head at ${headAt.toFixed(0)} ms, not held for the body (${doneAt.toFixed(0)} ms)`);
});
