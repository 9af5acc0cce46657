// The package as `npm run build` makes it (scripts/build.mjs: dist/ bundled with esbuild), laid
// out the way it installs: package.json, bin/, dist/, fuzz/corpus/ and no src/, so bin/ takes
// the built path. Everything that finds a file at run time is exercised from the bundle: the
// version (package.json), the dashboard's files, the request-log reader thread, the llhttp
// wasm, the selftest corpus.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import bcrypt from 'bcrypt';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { startUpstream, type TestUpstream } from './support/upstream.ts';
import { startChildProxy, writeConfig, type ChildProxy } from './support/child-proxy.ts';
import { clientAgent, request } from './support/proxy.ts';
import { runCli } from './support/run-cli.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PASSWORD = 'built-package-password';
const AUTH = `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`;

let pkg: string;
let bin: string;
let pki: TestPki;
let up: TestUpstream;
let proxy: ChildProxy;
let adminPort: number;

before(async () => {
  pkg = mkdtempSync(join(tmpdir(), 'mtls-built-'));
  execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--out', join(pkg, 'dist')], { stdio: 'inherit' });
  cpSync(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(ROOT, 'bin'), join(pkg, 'bin'), { recursive: true });
  mkdirSync(join(pkg, 'fuzz'));
  symlinkSync(join(ROOT, 'fuzz/corpus'), join(pkg, 'fuzz/corpus'));
  symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
  bin = join(pkg, 'bin/mtls-proxy.js');

  pki = await makeTestPki();
  up = await startUpstream(pki);
  const config = writeConfig(
    pki,
    up.port,
    `
[admin]
address = "127.0.0.1:0"
username = "admin"
password_hash = "${await bcrypt.hash(PASSWORD, 4)}"

[request_log]
path = "requests.sqlite"
`,
  );
  proxy = await startChildProxy(config, [], bin);
  adminPort = Number(/"admin":"127\.0\.0\.1:(\d+)"/.exec(proxy.log())?.[1]);
});

after(async () => {
  await proxy?.stop();
  await up?.close();
  pki?.cleanup();
  rmSync(pkg, { recursive: true, force: true });
});

test('the build is a handful of bundled files', () => {
  const files = readdirSync(join(pkg, 'dist'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.js') && !f.startsWith('admin/dashboard'));
  assert.ok(files.includes('cli.js') && files.includes('admin/request-log-worker.js'), files.join(' '));
  assert.ok(files.length < 40, `${files.length} files`);
  assert.ok(!files.some((f) => f.startsWith('.tsc')), 'the intermediate tsc output is removed');
});

test('the built proxy serves, and its request log, dashboard and version work from the bundle', async () => {
  assert.ok(adminPort > 0, 'the admin listener is up');
  const agent = clientAgent(pki);
  try {
    const r = await request(proxy.port, agent, 'GET', '/built?x=1');
    assert.equal(r.status, 200);
    assert.match(r.body.toString(), /"url":"\/built\?x=1"/);
  } finally {
    agent.destroy();
  }
  const base = `http://127.0.0.1:${adminPort}`;
  const dash = await fetch(`${base}/`, { headers: { authorization: AUTH } });
  assert.equal(dash.status, 200);
  assert.match(await dash.text(), /<html/i);
  const status = (await (await fetch(`${base}/api/status`, { headers: { authorization: AUTH } })).json()) as { version: string };
  assert.equal(status.version, (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
  // the request log's reader thread (its own bundle) answers the query
  let rows: Array<{ path: string }> = [];
  for (let i = 0; i < 40 && !rows.some((r) => r.path === '/built'); i++) {
    await new Promise((res) => setTimeout(res, 50));
    rows = ((await (await fetch(`${base}/api/requests?limit=10`, { headers: { authorization: AUTH } })).json()) as { requests: Array<{ path: string }> }).requests;
  }
  assert.ok(rows.some((r) => r.path === '/built'), JSON.stringify(rows));
});

test('the built proxy starts without loading what it does not use: pino transports, worker threads, assert, fs/promises, webcrypto', async (t) => {
  // scripts/build.mjs makes pino's and sonic-boom's require() of thread-stream,
  // node:worker_threads and node:assert lazy (~1 MiB of idle RSS); log.ts writes stderr
  // synchronously, so nothing reads isMainThread. A pino upgrade that moves those requires fails
  // the build; one that adds another eager one shows up here. The bundle also imports Node's
  // built-ins without their ES facades, whose lazy getters would load node:fs/promises (with
  // readline) and node:crypto's webcrypto (~0.9 MiB).
  const dir = mkdtempSync(join(tmpdir(), 'mtls-built-modules-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const list = join(dir, 'modules.txt');
  const preload = join(dir, 'preload.cjs');
  writeFileSync(preload, `setInterval(() => require('node:fs').writeFileSync(${JSON.stringify(list)}, process.moduleLoadList.join('\\n')), 50).unref();\n`);
  const config = writeConfig(pki, up.port, '');
  const plain = await startChildProxy(config, ['-r', preload], bin);
  try {
    const agent = clientAgent(pki);
    try {
      assert.equal((await request(plain.port, agent, 'GET', '/lean')).status, 200);
    } finally {
      agent.destroy();
    }
    await new Promise((res) => setTimeout(res, 200));
    const loaded = readFileSync(list, 'utf8').split('\n');
    assert.ok(loaded.includes('NativeModule tls'), 'the list is the proxy\'s');
    for (const mod of ['worker_threads', 'assert', 'internal/fs/promises', 'internal/readline/interface', 'internal/crypto/webcrypto']) {
      assert.ok(!loaded.includes(`NativeModule ${mod}`), `${mod} is loaded`);
    }
    // and the log still reaches stderr, line by line
    assert.match(plain.log(), /^\{"level":30,.*"msg":"listening"/m);
  } finally {
    await plain.stop();
  }
});

test('the built bin prints its version and runs the selftest with the shipped corpus', async () => {
  const version = await runCli(['--version'], { bin });
  assert.equal(version.code, 0, version.stderr);
  assert.match(version.stdout, /^\d+\.\d+\.\d+/);
  const dir = mkdtempSync(join(tmpdir(), 'mtls-built-selftest-'));
  try {
    const init = await runCli(['pki', 'init', '--out', dir], { bin });
    assert.equal(init.code, 0, init.stderr);
    const run = await runCli(['selftest', '-c', join(dir, 'mtls-proxy.toml')], { bin });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^pass /m);
    assert.doesNotMatch(run.stdout, /^FAIL /m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
