// http mode: a certificate that chains but is not on the allow-list gets 403, and the
// upstream sees nothing; one on the list passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeTestPki } from './support/pki.ts';
import { startUpstream } from './support/upstream.ts';
import { startProxy, clientAgent, request } from './support/proxy.ts';

test('allow-list: matching URI SAN passes, others get 403', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const allowed = await startProxy(pki, up.port, { tls: { client_auth: 'require', allow: ['URI=spiffe://test/*'] } });
  const denied = await startProxy(pki, up.port, { tls: { client_auth: 'require', allow: ['CN=orders', 'DNS=*.prod.internal'] } });
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await allowed.stop();
    await denied.stop();
    await up.close();
    pki.cleanup();
  });
  const ok = await request(allowed.port, agent, 'GET', '/in');
  assert.equal(ok.status, 200);
  const before = up.seen.length;
  const no = await request(denied.port, agent, 'GET', '/out');
  assert.equal(no.status, 403);
  assert.match(no.body.toString(), /MTLS_ERR_FORBIDDEN/);
  assert.equal(no.headers.connection, 'close');
  assert.equal(up.seen.length, before);
  assert.equal(denied.records.at(-1)!.clientSubject, 'CN=test-client,O=Example');
});
