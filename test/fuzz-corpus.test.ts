// The regression corpus (fuzz/corpus/*.json: public smuggling cases and every fuzzer finding)
// replayed through a real proxy on real TLS in front of a recording origin, one test per case.
// Each replay also checks the invariants of any input: canonical messages upstream and down,
// nothing forwarded but what the case expects, every forwarded request logged, nothing left open.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { loadCorpus } from '../src/selftest/corpus.ts';
import { RecordingOrigin } from '../src/selftest/origin.ts';
import { replayCase, type ReplayEnv } from '../src/selftest/replay.ts';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { startProxy, type TestProxy } from './support/proxy.ts';

const cases = loadCorpus();
let pki: TestPki;
let origin: RecordingOrigin;
let proxy: TestProxy;
let env: ReplayEnv;
const SOCKETS = new Set(['TCPSocketWrap', 'TCPServerWrap', 'TLSWrap']);
const openSockets = (): number => process.getActiveResourcesInfo().filter((r) => SOCKETS.has(r)).length;
let baseline = 0;

before(async () => {
  baseline = openSockets();
  pki = await makeTestPki();
  origin = await RecordingOrigin.start({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert });
  proxy = await startProxy(pki, origin.port);
  const limits = proxy.server.config.listeners[0]!.limits;
  env = {
    port: proxy.port,
    client: { ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key, servername: 'localhost' },
    origin,
    limits,
    router: null,
    records: proxy.records,
    openConnections: () => proxy.server.openConnections,
  };
});
after(async () => {
  await proxy.stop();
  await origin.close();
  pki.cleanup();
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(openSockets(), baseline, 'no socket left open');
});

test('the corpus has cases from every family the issue names', () => {
  const families = new Set(cases.map((c) => c.family));
  for (const f of ['CL.TE', 'TE.CL', 'TE.TE', 'llhttp CVE', 'chunked body', 'header syntax', 'HTTP Garden', 'HAProxy', 'Envoy', 'response']) {
    assert.ok([...families].some((x) => x.includes(f)) || cases.some((c) => c.source.includes(f)), `no case from ${f}`);
  }
});

for (const c of cases) {
  test(`${c.family}: ${c.name}`, async () => {
    const r = await replayCase(c, env);
    assert.ok(r.pass, `${c.file}: expected ${r.expected}, got ${r.got}\n  ${r.problems.join('\n  ')}`);
  });
}
