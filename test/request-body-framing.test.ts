// Content-Length request bodies are counted by the proxy itself, not by llhttp (downstream.ts
// #takeBody): after the head, exactly Content-Length bytes go to the upstream as the body and
// what follows is parsed as the next request. Raw-socket tests: pipelined sequences of bodies
// and heads cut at arbitrary points across TLS records (a property test), bodies that look
// like requests, a client that leaves mid-body, and an early answer before the body's end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { proxyFixture } from './support/fixture.ts';
import type { TestPki } from './support/pki.ts';

const H = 'Host: localhost\r\n';

/** Writes `pieces` as separate TLS records (a pause between them), collects until the proxy closes. */
function sendInPieces(port: number, pki: TestPki, pieces: Buffer[], waitMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
    const parts: Buffer[] = [];
    const timer = setTimeout(() => s.destroy(), waitMs);
    s.on('secureConnect', async () => {
      for (const p of pieces) {
        if (s.destroyed) return;
        s.write(p);
        await sleep(1);
      }
    });
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', (e) => (parts.length > 0 ? undefined : reject(e)));
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts).toString('latin1'));
    });
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('pipelined Content-Length bodies cut anywhere: each body whole, each next head parsed (property)', async (t) => {
  const { pki, up, proxy } = await proxyFixture(t);
  // bodies that look like the start of a request are the classic smuggling bait
  const body = fc.oneof(
    fc.uint8Array({ minLength: 0, maxLength: 300 }).map((a) => Buffer.from(a)),
    fc.constantFrom(Buffer.from(`GET /smuggled HTTP/1.1\r\n${H}\r\n`), Buffer.from('0\r\n\r\n'), Buffer.from('\r\n\r\n')),
  );
  const req = fc.record({ post: fc.boolean(), body });
  await fc.assert(
    fc.asyncProperty(fc.array(req, { minLength: 1, maxLength: 5 }), fc.array(fc.integer({ min: 1, max: 400 }), { maxLength: 12 }), async (reqs, cuts) => {
      up.seen.length = 0;
      const wire: Buffer[] = [];
      reqs.forEach((r, i) => {
        const last = i === reqs.length - 1 ? 'Connection: close\r\n' : '';
        if (r.post) wire.push(Buffer.from(`POST /r${i} HTTP/1.1\r\n${H}${last}Content-Length: ${r.body.length}\r\n\r\n`, 'latin1'), r.body);
        else wire.push(Buffer.from(`GET /r${i} HTTP/1.1\r\n${H}${last}\r\n`, 'latin1'));
      });
      const all = Buffer.concat(wire);
      // cut the byte stream at the chosen lengths, the rest in one piece
      const pieces: Buffer[] = [];
      let at = 0;
      for (const c of cuts) {
        if (at >= all.length) break;
        pieces.push(all.subarray(at, Math.min(all.length, at + c)));
        at += c;
      }
      if (at < all.length) pieces.push(all.subarray(at));
      const out = await sendInPieces(proxy.port, pki, pieces);
      const statuses = [...out.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
      assert.deepEqual(statuses, reqs.map(() => '200'), out.slice(0, 400));
      assert.deepEqual(up.seen.map((s) => s.url), reqs.map((_, i) => `/r${i}`));
      reqs.forEach((r, i) => {
        if (!r.post) return;
        assert.equal(up.seen[i]!.bodyLength, r.body.length, `body of /r${i}`);
        assert.equal(up.seen[i]!.sha256, sha(r.body), `body of /r${i}`);
      });
    }),
    { numRuns: 25 },
  );
});

test('a client that leaves mid-body: the upstream never sees a complete request', async (t) => {
  const { pki, up, proxy } = await proxyFixture(t);
  // the test upstream's handlers run at the body's end; watch the request from its start
  let cut = false;
  up.server.on('request', (req) => {
    if (req.url === '/upload') req.on('close', () => (cut = !req.complete));
  });
  await sendInPieces(proxy.port, pki, [Buffer.from(`POST /upload HTTP/1.1\r\n${H}Content-Length: 100000\r\n\r\n`), Buffer.alloc(5000, 'x')], 400);
  for (let i = 0; i < 50 && !cut; i++) await sleep(20);
  assert.equal(cut, true, 'the upstream request was cut short');
  assert.ok(!up.seen.some((x) => x.url === '/upload'), 'the upstream saw the request end');
});

test('an answer before the body has all arrived ends the connection; the rest is never parsed as a request', async (t) => {
  const { pki, up, proxy } = await proxyFixture(t);
  // answers as soon as the head is in, without reading the body
  up.server.on('request', (req, res) => {
    if (req.url !== '/early') return;
    res.writeHead(413, { 'content-length': '8', connection: 'close' });
    res.end('too big\n');
  });
  const head = Buffer.from(`POST /early HTTP/1.1\r\n${H}Content-Length: 200000\r\n\r\n`);
  // body bytes that would be a request if they were parsed as one
  const bait = Buffer.from(`GET /smuggled HTTP/1.1\r\n${H}\r\n`);
  const pieces = [head, bait, ...Array.from({ length: 20 }, () => Buffer.concat([bait, Buffer.alloc(4000, 'y')]))];
  const out = await sendInPieces(proxy.port, pki, pieces, 3000);
  assert.match(out, /^HTTP\/1\.1 413 /);
  assert.equal([...out.matchAll(/HTTP\/1\.1 \d{3}/g)].length, 1, out.slice(0, 400));
  assert.ok(!up.seen.some((s) => s.url === '/smuggled'), 'a body byte reached the upstream as a request');
});
