// The usual cast of an HTTP test: a fresh test PKI, a recording mTLS upstream, a proxy in
// front of it and a client agent with the test client certificate, all torn down by t.after.
import type https from 'node:https';
import type { TestContext } from 'node:test';
import { makeTestPki, type TestPki } from './pki.ts';
import { clientAgent, startProxy, type ProxyOptions, type TestProxy } from './proxy.ts';
import { startUpstream, type TestUpstream } from './upstream.ts';

export interface ProxyFixture {
  pki: TestPki;
  up: TestUpstream;
  proxy: TestProxy;
  agent: https.Agent;
}

export interface FixtureOptions extends ProxyOptions {
  /** The upstream's keep-alive timeout in ms (default 5000). */
  upstreamKeepAliveMs?: number;
}

export async function proxyFixture(t: TestContext, opts: FixtureOptions = {}): Promise<ProxyFixture> {
  const pki = await makeTestPki();
  const up = await startUpstream(pki, opts.upstreamKeepAliveMs !== undefined ? { keepAliveTimeout: opts.upstreamKeepAliveMs } : {});
  const proxy = await startProxy(pki, up.port, opts);
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  return { pki, up, proxy, agent };
}
