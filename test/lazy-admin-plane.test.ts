// A proxy without [admin], [request_log] or a CRL never loads the admin plane's packages
// (prom-client, better-sqlite3, bcrypt) nor @peculiar/x509: together ~35 MiB of idle RSS that a
// bare proxy has no use for. With those sections the same packages do load, which shows the
// probe sees them.
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startChildProxy, writeConfig, type ChildProxy } from './support/child-proxy.ts';
import { makeTestPki } from './support/pki.ts';
import { startUpstream } from './support/upstream.ts';

const PRELOAD = fileURLToPath(new URL('./support/report-packages.cjs', import.meta.url));
const HEAVY = ['@peculiar/x509', 'bcrypt', 'better-sqlite3', 'prom-client'];

async function loadedPackages(proxy: ChildProxy): Promise<string[]> {
  proxy.child.kill('SIGUSR2');
  for (let i = 0; i < 100; i++) {
    const m = /\{"loaded_packages":(\[[^\]]*\])\}/.exec(proxy.log());
    if (m) return JSON.parse(m[1]!) as string[];
    await sleep(20);
  }
  throw new Error(`no package report:\n${proxy.log()}`);
}

test('a bare proxy loads no admin-plane or X.509 packages; [admin] and [request_log] load theirs', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  t.after(async () => {
    await up.close();
    pki.cleanup();
  });

  const bare = await startChildProxy(writeConfig(pki, up.port), ['-r', PRELOAD]);
  const bareLoaded = await loadedPackages(bare);
  assert.equal(await bare.stop(), 0);
  assert.ok(bareLoaded.includes('generic-pool'), `the probe sees the data plane's packages: ${bareLoaded.join(' ')}`);
  for (const name of HEAVY) assert.ok(!bareLoaded.includes(name), `${name} is not loaded without [admin]/[request_log]/crl: ${bareLoaded.join(' ')}`);

  const full = await startChildProxy(writeConfig(pki, up.port, `
[admin]
address = "127.0.0.1:0"

[request_log]
path = "requests.sqlite"
`), ['-r', PRELOAD]);
  const fullLoaded = await loadedPackages(full);
  assert.equal(await full.stop(), 0);
  for (const name of ['bcrypt', 'better-sqlite3', 'prom-client']) assert.ok(fullLoaded.includes(name), `${name} loads with [admin] and [request_log]`);
});

test('workers = 2 without [admin]: no worker keeps metrics (prom-client is not loaded in any)', { timeout: 60_000 }, async (t) => {
  // Each worker keeps metrics only for the primary's /metrics; without [admin] nothing reads
  // them, and keeping them costs every request. (With [admin], test/workers.test.ts reads the
  // workers' metrics through the primary.)
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  t.after(async () => {
    await up.close();
    pki.cleanup();
  });
  const path = writeConfig(pki, up.port);
  writeFileSync(path, readFileSync(path, 'utf8').replace('[server]\n', '[server]\nworkers = 2\n'));
  // node:cluster forks the workers with the primary's execArgv, so they get the preload too
  const proxy = await startChildProxy(path, ['-r', PRELOAD]);
  try {
    let pids: number[] = [];
    for (let i = 0; i < 200 && pids.length === 0; i++) {
      const m = /"pids":\[([\d,]+)\]/.exec(proxy.log());
      if (m) pids = m[1]!.split(',').map(Number);
      else await sleep(25);
    }
    assert.equal(pids.length, 2, proxy.log());
    for (const pid of pids) process.kill(pid, 'SIGUSR2');
    let reports: string[][] = [];
    for (let i = 0; i < 200 && reports.length < 2; i++) {
      reports = [...proxy.log().matchAll(/\{"loaded_packages":(\[[^\]]*\])\}/g)].map((m) => JSON.parse(m[1]!) as string[]);
      if (reports.length < 2) await sleep(25);
    }
    assert.equal(reports.length, 2, proxy.log());
    for (const loaded of reports) {
      assert.ok(loaded.includes('generic-pool'), `the probe sees the worker's data plane: ${loaded.join(' ')}`);
      assert.ok(!loaded.includes('prom-client'), `a worker loaded prom-client without [admin]: ${loaded.join(' ')}`);
    }
  } finally {
    assert.equal(await proxy.stop(), 0);
  }
});
