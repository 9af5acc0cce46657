// Requests that arrive in later writes while a response is still pending (the client
// connection keeps reading then, and pauses only once bytes come: src/http/downstream.ts) wait
// unparsed and are answered in order, and a FIN after them still lets every one be answered.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { proxyFixture } from './support/fixture.ts';

test('requests written while a response is pending, then a FIN: all answered in order', async (t) => {
  const { pki, up, proxy } = await proxyFixture(t);
  up.handlers.set('/a', (_req, res) => setTimeout(() => res.end('A'), 300));
  up.handlers.set('/b', (_req, res) => setTimeout(() => res.end('BB'), 50));
  up.handlers.set('/c', (_req, res) => res.end('CCC'));
  const H = 'Host: localhost\r\n';
  const s = tls.connect({ host: '127.0.0.1', port: proxy.port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
  const parts: Buffer[] = [];
  s.on('data', (d: Buffer) => parts.push(d));
  const closed = new Promise<void>((resolve) => s.on('close', () => resolve()));
  await new Promise<void>((resolve) => s.once('secureConnect', () => resolve()));
  s.write(`GET /a HTTP/1.1\r\n${H}\r\n`);
  await sleep(100);
  s.write(`POST /b HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nxyz`);
  await sleep(50);
  s.write(`GET /c HTTP/1.1\r\n${H}\r\n`);
  await sleep(50);
  s.end();
  const timer = setTimeout(() => s.destroy(), 3000);
  await closed;
  clearTimeout(timer);
  const out = Buffer.concat(parts).toString('latin1');
  const statuses = [...out.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
  assert.deepEqual(statuses, ['200', '200', '200'], out);
  const a = out.indexOf('\r\n\r\nA');
  const b = out.indexOf('BB');
  const c = out.indexOf('CCC');
  assert.ok(a > 0 && a < b && b < c, out);
  assert.deepEqual(up.seen.map((r) => r.url), ['/a', '/b', '/c']);
  assert.equal(up.seen[1]!.bodyLength, 3);
});
