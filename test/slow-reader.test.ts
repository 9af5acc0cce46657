// A client that stops reading: the proxy stops reading the upstream (backpressure), so what
// sits between them stays bounded by socket buffers, not by the response size.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import tls from 'node:tls';
import { makeTestPki } from './support/pki.ts';
import { startUpstream, PATTERN, patternSha256 } from './support/upstream.ts';
import { startProxy } from './support/proxy.ts';

test('128 MiB to a client that pauses: upstream is held back, then everything arrives intact', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const SIZE = 128 * 1024 * 1024;
  let written = 0;
  up.handlers.set('/big', (_req, res) => {
    res.writeHead(200, { 'content-length': SIZE });
    const block = Buffer.from(PATTERN, 'latin1');
    const pump = (): void => {
      while (written < SIZE) {
        written += block.length;
        if (!res.write(block)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  });
  const proxy = await startProxy(pki, up.port);
  t.after(async () => {
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const s = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
  await new Promise<void>((r) => s.once('secureConnect', () => r()));
  s.write('GET /big HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
  // read a little, then stop reading for a while
  let received = 0;
  const hash = createHash('sha256');
  let headDone = false;
  let pending = Buffer.alloc(0);
  const onData = (d: Buffer): void => {
    if (!headDone) {
      pending = Buffer.concat([pending, d]);
      const end = pending.indexOf('\r\n\r\n');
      if (end === -1) return;
      headDone = true;
      d = pending.subarray(end + 4);
    }
    received += d.length;
    hash.update(d);
  };
  s.on('data', onData);
  await new Promise((r) => setTimeout(r, 200));
  s.pause();
  await new Promise((r) => setTimeout(r, 1500));
  const inFlight = written - received;
  assert.ok(written < SIZE, `upstream wrote everything (${written}) while the client was paused`);
  // kernel socket buffers on loopback (two connections, send + receive, autotuned to several
  // MiB each) hold ~20 MiB; without backpressure the upstream would have written all 128 MiB
  assert.ok(inFlight < 32 * 1024 * 1024, `${inFlight} bytes between upstream and client while paused`);
  const done = new Promise<void>((r) => s.on('close', () => r()));
  s.resume();
  await done;
  assert.equal(received, SIZE);
  assert.equal(hash.digest('hex'), patternSha256(SIZE));
});
