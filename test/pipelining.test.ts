// Pipelined requests (several in one write) are answered in order, each forwarded whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeTestPki } from './support/pki.ts';
import { startUpstream } from './support/upstream.ts';
import { startProxy, rawExchange } from './support/proxy.ts';

test('three pipelined requests in one write get three responses in order', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  // the first is slowest: order must come from the proxy, not from luck
  up.handlers.set('/a', (_req, res) => setTimeout(() => res.end('A'), 150));
  up.handlers.set('/b', (_req, res) => setTimeout(() => res.end('BB'), 50));
  up.handlers.set('/c', (_req, res) => res.end('CCC'));
  const proxy = await startProxy(pki, up.port);
  t.after(async () => {
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const H = 'Host: localhost\r\n';
  const out = await rawExchange(
    proxy.port,
    pki,
    `GET /a HTTP/1.1\r\n${H}\r\nPOST /b HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
    3000,
  );
  const statuses = [...out.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
  assert.deepEqual(statuses, ['200', '200', '200']);
  const a = out.indexOf('\r\n\r\nA');
  const b = out.indexOf('BB');
  const c = out.indexOf('CCC');
  assert.ok(a > 0 && a < b && b < c, out);
  assert.deepEqual(up.seen.map((s) => s.url), ['/a', '/b', '/c']);
  assert.equal(up.seen[1]!.bodyLength, 3);
});
