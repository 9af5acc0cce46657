// Upstream down -> 502; no response head in time -> 504; upstream dies mid-body -> the
// client connection is closed, never a truncated message on a live connection.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { makeTestPki } from './support/pki.ts';
import { startUpstream } from './support/upstream.ts';
import { startProxy, clientAgent, request } from './support/proxy.ts';
import { proxyFixture } from './support/fixture.ts';

async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('upstream unreachable -> 502 with the connect error code, endpoint marked unhealthy', async (t) => {
  const pki = await makeTestPki();
  const port = await closedPort();
  const proxy = await startProxy(pki, port);
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    pki.cleanup();
  });
  const r = await request(proxy.port, agent, 'GET', '/x');
  assert.equal(r.status, 502);
  assert.match(r.body.toString(), /MTLS_ERR_UPSTREAM_CONNECT/);
  assert.equal(proxy.records.at(-1)!.error, 'MTLS_ERR_UPSTREAM_CONNECT');
  const ep = proxy.server.clusters.get('backend')!.report()[0]!;
  assert.equal(ep.healthy, false);
  assert.equal(ep.lastError, 'MTLS_ERR_UPSTREAM_CONNECT');
  // still 502 (not a stale 503) while the endpoint is in back-off
  const again = await request(proxy.port, agent, 'GET', '/x');
  assert.equal(again.status, 502);
});

test('upstream certificate for the wrong name -> 502 MTLS_ERR_UPSTREAM_TLS', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startProxy(pki, up.port, { upstream: { tls: { cert: pki.file('proxy.pem', pki.proxyClient.cert), key: pki.file('proxy-key.pem', pki.proxyClient.key), ca: pki.file('ca.pem', pki.ca.cert), server_name: 'not-the-upstream.example' } } });
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const r = await request(proxy.port, agent, 'GET', '/x');
  assert.equal(r.status, 502);
  assert.match(r.body.toString(), /MTLS_ERR_UPSTREAM_TLS/);
  assert.equal(up.seen.length, 0);
});

test('no response head within timeouts.response_header -> 504', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t, { upstream: { timeouts: { response_header: '300ms' } } });
  up.handlers.set('/hang', () => {});
  const t0 = Date.now();
  const r = await request(proxy.port, agent, 'GET', '/hang');
  const took = Date.now() - t0;
  assert.equal(r.status, 504);
  assert.match(r.body.toString(), /MTLS_ERR_UPSTREAM_RESPONSE_TIMEOUT/);
  assert.ok(took >= 280 && took < 3000, `took ${took} ms`);
});

test('upstream resets before answering -> 502', async (t) => {
  const { up, proxy, agent } = await proxyFixture(t);
  up.handlers.set('/reset', (req) => req.socket.destroy());
  const r = await request(proxy.port, agent, 'POST', '/reset', 'body');
  assert.equal(r.status, 502);
  assert.match(r.body.toString(), /MTLS_ERR_UPSTREAM_RESET/);
});

test('upstream dies mid-body -> the client connection is closed, not a short message', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  up.handlers.set('/die', (req, res) => {
    res.writeHead(200, { 'content-length': '1000000' });
    res.write(Buffer.alloc(10000, 1));
    setTimeout(() => req.socket.destroy(), 50);
  });
  const proxy = await startProxy(pki, up.port);
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const outcome = await new Promise<string>((resolve) => {
    const r = https.get({ host: '127.0.0.1', port: proxy.port, path: '/die', agent, servername: 'localhost' }, (res) => {
      let n = 0;
      res.on('data', (d: Buffer) => (n += d.length));
      res.on('end', () => resolve(`complete ${n}`));
      res.on('aborted', () => resolve(`aborted after ${n}`));
      res.on('error', () => resolve(`error after ${n}`));
    });
    r.on('error', (e) => resolve(`request error ${e.message}`));
  });
  assert.match(outcome, /^(aborted|error)/, outcome);
  assert.equal(proxy.records.at(-1)!.error, 'MTLS_ERR_UPSTREAM_ABORTED');
});

test('chunked upstream response cut mid-body -> client connection closed without the last chunk', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  up.handlers.set('/die-chunked', (req, res) => {
    res.write('first');
    setTimeout(() => req.socket.destroy(), 50);
  });
  const proxy = await startProxy(pki, up.port);
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const outcome = await new Promise<string>((resolve) => {
    https.get({ host: '127.0.0.1', port: proxy.port, path: '/die-chunked', agent, servername: 'localhost' }, (res) => {
      res.resume();
      res.on('end', () => resolve('complete'));
      res.on('aborted', () => resolve('aborted'));
      res.on('error', () => resolve('error'));
    }).on('error', () => resolve('request error'));
  });
  assert.notEqual(outcome, 'complete');
});

test('bytes after a Content-Length body are dropped and the upstream connection is not reused', async (t) => {
  const pki = await makeTestPki();
  // a raw upstream answering every request with its response plus a second, unasked-for one
  let connections = 0;
  const up = tls.createServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true }, (s) => {
    connections++;
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      while (buf.includes('\r\n\r\n')) {
        buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!');
      }
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
  const proxy = await startProxy(pki, (up.address() as net.AddressInfo).port);
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await new Promise<void>((r) => up.close(() => { r(); }));
    pki.cleanup();
  });
  for (let i = 0; i < 3; i++) {
    const r = await request(proxy.port, agent, 'GET', `/${i}`);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'hello');
  }
  assert.equal(connections, 3);
});
