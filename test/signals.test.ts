// Signals reach the proxy process: SIGHUP reloads certificates (a new handshake sees the new
// certificate while an open connection keeps working), SIGTERM drains (in-flight requests
// finish, late keep-alive requests get Connection: close, new connections are refused) and
// the process exits 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { startUpstream } from './support/upstream.ts';
import { startChildProxy, writeConfig } from './support/child-proxy.ts';
import { clientAgent, request } from './support/proxy.ts';

function peerFingerprint(port: number, pki: TestPki): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }, () => {
      const fp = s.getPeerX509Certificate()!.fingerprint256;
      s.destroy();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

async function until(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('condition not met in time');
}

test('SIGHUP: new handshakes get the new certificate, an open connection keeps working', { timeout: 30_000 }, async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startChildProxy(writeConfig(pki, up.port));
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const oldFp = new X509Certificate(pki.server.cert).fingerprint256;
  assert.equal(await peerFingerprint(proxy.port, pki), oldFp);
  // an open keep-alive connection
  assert.equal((await request(proxy.port, agent, 'GET', '/before')).status, 200);
  const next = await pki.issue({ cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'], usage: ['server'] });
  pki.file('server.pem', next.cert);
  pki.file('server-key.pem', next.key);
  proxy.child.kill('SIGHUP');
  const newFp = new X509Certificate(next.cert).fingerprint256;
  await until(async () => (await peerFingerprint(proxy.port, pki)) === newFp);
  // the connection opened before still carries requests
  assert.equal((await request(proxy.port, agent, 'GET', '/after')).status, 200);
  assert.equal(up.seen.at(-1)!.url, '/after');
  assert.match(proxy.log(), /certificates reloaded/);

  // a bad file: the old (new) certificate stays, the reason is logged
  pki.file('server-key.pem', (await pki.issue({ cn: 'other', usage: ['server'] })).key);
  proxy.child.kill('SIGHUP');
  await until(() => /reload refused/.test(proxy.log()));
  assert.equal(await peerFingerprint(proxy.port, pki), newFp);
});

test('SIGTERM: in-flight requests finish, then the process exits 0', { timeout: 30_000 }, async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  up.handlers.set('/slow', (_req, res) => setTimeout(() => res.end('finished'), 700));
  const proxy = await startChildProxy(writeConfig(pki, up.port));
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const inFlight = request(proxy.port, agent, 'GET', '/slow');
  await until(() => up.seen.length === 1); // reached the upstream, which answers 700 ms later
  await new Promise((r) => setTimeout(r, 100));
  proxy.child.kill('SIGTERM');
  const r = await inFlight;
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'finished');
  assert.equal(r.headers.connection, 'close', 'a response finished while draining closes the connection');
  const code = await proxy.exited;
  assert.equal(code, 0);
  await assert.rejects(request(proxy.port, clientAgent(pki), 'GET', '/late'));
  assert.match(proxy.log(), /"msg":"draining"/);
  assert.match(proxy.log(), /"msg":"stopped"/);
});
