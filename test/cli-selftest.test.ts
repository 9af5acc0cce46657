// `mtls-proxy selftest -c <config>` against the config `pki init` writes: an all-pass table and
// exit 0. The same command on a deliberately weakened build (llhttp lenient flags, loaded only
// through a test module) reports the smuggling cases as failures and exits 1: the harness can fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadCorpus } from '../src/selftest/corpus.ts';
import { BIN, hasStackTrace, runCli, type CliResult } from './support/run-cli.ts';

const WEAKEN = pathToFileURL(fileURLToPath(new URL('./support/weaken-parser.ts', import.meta.url))).href;
const CASES = loadCorpus().length;

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-selftest-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function demoConfig(t: { after(fn: () => void): void }): Promise<string> {
  const dir = tempDir(t);
  const init = await runCli(['pki', 'init', '--out', dir]);
  assert.equal(init.code, 0, init.stderr);
  return join(dir, 'mtls-proxy.toml');
}

function rows(stdout: string): Array<{ result: string; name: string }> {
  return stdout
    .split('\n')
    .filter((l) => /^(pass|FAIL) /.test(l))
    .map((l) => {
      const cells = l.split(/\s{2,}/);
      return { result: cells[0]!, name: cells[2]! };
    });
}

test('selftest on the pki init config prints an all-pass table and exits 0', async (t) => {
  const config = await demoConfig(t);
  const r = await runCli(['selftest', '-c', config]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const table = rows(r.stdout);
  assert.equal(table.length, CASES, 'one row per corpus case');
  assert.ok(table.every((row) => row.result === 'pass'));
  assert.match(r.stdout, new RegExp(`^${CASES} passed, 0 failed \\(${CASES} cases, listener "edge"\\)$`, 'm'));
  assert.ok(!hasStackTrace(r.stderr), r.stderr);
});

test('selftest follows the config: its limits size the limit cases, its routes (strip_prefix, a second upstream) map the targets', async (t) => {
  const config = await demoConfig(t);
  const text = readFileSync(config, 'utf8')
    .replace('[listeners.edge.tls]', '[listeners.edge.limits]\n  max_header_size = "16KiB"\n  max_headers = 40\n  max_uri_length = "2KiB"\n  [[listeners.edge.routes]]\n  path_prefix = "/p"\n  upstream = "other"\n  strip_prefix = true\n  [listeners.edge.tls]')
    .concat('\n[upstreams.other]\nendpoints = ["127.0.0.1:9"]\n  [upstreams.other.tls]\n  cert = "client.pem"\n  key = "client-key.pem"\n  ca = "ca.pem"\n  server_name = "localhost"\n');
  writeFileSync(config, text);
  const r = await runCli(['selftest', '-c', config]);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, new RegExp(`^${CASES} passed, 0 failed `, 'm'));
});

test('a weakened build (lenient llhttp) makes selftest report failures and exit 1', async (t) => {
  const config = await demoConfig(t);
  const r = await new Promise<CliResult>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', WEAKEN, BIN, 'selftest', '-c', config], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  const failed = new Set(rows(r.stdout).filter((row) => row.result === 'FAIL').map((row) => row.name));
  // the cases each leniency lets through
  for (const name of ['cl-te-prefix', 'te-cl-smuggled-get', 'te-duplicate-headers', 'obs-fold', 'ctl-in-value', 'cve-2022-32214-bare-lf', 'chunk-size-trailing-space']) {
    assert.ok(failed.has(name), `${name} should fail on the weakened build; failed: ${[...failed].join(', ')}`);
  }
  assert.match(r.stdout, /^\d+ passed, [1-9]\d* failed /m);
  assert.match(r.stdout, /^failures:$/m);
});

test('selftest: bad usage exits 2, a bad config 1, a config without an http listener 1', async (t) => {
  const usage = await runCli(['selftest', '--nope']);
  assert.equal(usage.code, 2);
  const dir = tempDir(t);
  const missing = await runCli(['selftest', '-c', join(dir, 'absent.toml')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no such file/);
  const tcpOnly = join(dir, 'tcp.toml');
  writeFileSync(
    tcpOnly,
    `[listeners.t]\naddress = "127.0.0.1:0"\nmode = "tcp"\nupstream = "b"\n  [listeners.t.tls]\n  cert = "c.pem"\n  key = "k.pem"\n  client_auth = "none"\n[upstreams.b]\nendpoints = ["127.0.0.1:1"]\n`,
  );
  const noHttp = await runCli(['selftest', '-c', tcpOnly]);
  assert.equal(noHttp.code, 1, noHttp.stderr);
  assert.match(noHttp.stderr, /listeners.*mode = "http"/);
  assert.ok(!hasStackTrace(noHttp.stderr), noHttp.stderr);
});
