// `mtls-proxy start` refuses a bad config or certificate before opening any port.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki } from './support/pki.ts';
import { hasStackTrace, runCli } from './support/run-cli.ts';

const DAY = 86_400_000;

function configText(cert: string, key: string): string {
  return [
    '[listeners.edge]',
    'address = "127.0.0.1:0"',
    'upstream = "backend"',
    '  [listeners.edge.tls]',
    `  cert = "${cert}"`,
    `  key = "${key}"`,
    '[upstreams.backend]',
    'endpoints = ["127.0.0.1:9"]',
    '',
  ].join('\n');
}

test('start with a schema error exits 1 naming the key and line', async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const file = join(pki.dir, 'bad.toml');
  writeFileSync(file, configText('server.pem', 'server-key.pem').replace('upstream = "backend"', 'upstream = "nope"'));
  const result = await runCli(['start', '-c', file]);
  assert.equal(result.code, 1);
  assert.equal(result.stderr, 'error: listeners.edge.upstream (line 3): no upstream named "nope" (known upstreams: backend)\n');
  assert.equal(result.stdout, '');
});

test('start with an expired listener certificate exits 1 before binding', async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const expired = await pki.issue({ cn: 'localhost', usage: ['server'], notBefore: new Date(Date.now() - 10 * DAY), notAfter: new Date(Date.now() - DAY) });
  pki.file('expired.pem', expired.cert);
  pki.file('expired-key.pem', expired.key);
  const file = join(pki.dir, 'mtls-proxy.toml');
  writeFileSync(file, configText('expired.pem', 'expired-key.pem'));
  const result = await runCli(['start', '-c', file]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /^error: listeners\.edge\.tls\.cert \(line 5\): certificate expired on /m);
  assert.equal(hasStackTrace(result.stderr), false);
});

test('start without a config file exits 1 with one line', async (t) => {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  const result = await runCli(['start'], { cwd: pki.dir, env: { ...process.env, MTLS_PROXY_CONFIG: '' } });
  assert.equal(result.code, 1);
  assert.equal(result.stderr, `error: cannot read config file ${join(pki.dir, 'mtls-proxy.toml')}: no such file\n`);
});

test('MTLS_PROXY_DIST=1 without a built dist/ exits 1 saying to build first', async (t) => {
  const { mkdtempSync, mkdirSync, copyFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { spawnSync } = await import('node:child_process');
  const root = mkdtempSync(join(tmpdir(), 'mtls-bin-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'bin'));
  mkdirSync(join(root, 'src'));
  copyFileSync(new URL('../bin/mtls-proxy.js', import.meta.url), join(root, 'bin', 'mtls-proxy.js'));
  writeFileSync(join(root, 'src', 'cli.ts'), 'throw new Error("the sources must not be loaded");\n');
  const run = spawnSync(process.execPath, [join(root, 'bin', 'mtls-proxy.js'), '--version'], { env: { ...process.env, MTLS_PROXY_DIST: '1' }, encoding: 'utf8' });
  assert.equal(run.status, 1);
  assert.equal(run.stderr, 'mtls-proxy: dist/cli.js is missing; run `npm run build` first.\n');
});
