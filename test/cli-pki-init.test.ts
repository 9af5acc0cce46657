// `mtls-proxy pki init` writes a working dev setup: the example config it writes passes `check`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load.ts';
import { runCli } from './support/run-cli.ts';

const FILES = ['ca-key.pem', 'ca.pem', 'client-key.pem', 'client.pem', 'mtls-proxy.toml', 'server-key.pem', 'server.pem'];

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'mtls-pki-init-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('pki init writes the CA, server and client pairs and a config that passes check', async (t) => {
  const out = join(tempDir(t), 'dev', 'pki'); // nested: the folder is created
  const init = await runCli(['pki', 'init', '--out', out]);
  assert.equal(init.code, 0, init.stderr);
  assert.deepEqual(readdirSync(out).sort(), FILES);
  for (const name of FILES) assert.ok(init.stdout.includes(join(out, name)), `stdout names ${name}`);

  for (const key of ['ca-key.pem', 'server-key.pem', 'client-key.pem']) {
    assert.equal(statSync(join(out, key)).mode & 0o777, 0o600, `${key} is private`);
    createPrivateKey(readFileSync(join(out, key)));
  }
  const ca = new X509Certificate(readFileSync(join(out, 'ca.pem')));
  const server = new X509Certificate(readFileSync(join(out, 'server.pem')));
  const client = new X509Certificate(readFileSync(join(out, 'client.pem')));
  assert.equal(ca.ca, true);
  assert.ok(server.verify(ca.publicKey) && client.verify(ca.publicKey));
  assert.ok(server.checkHost('localhost') !== undefined && server.checkIP('127.0.0.1') !== undefined);
  assert.ok(server.checkPrivateKey(createPrivateKey(readFileSync(join(out, 'server-key.pem')))));

  const check = await runCli(['check', '-c', join(out, 'mtls-proxy.toml')]);
  assert.equal(check.code, 0, check.stderr);
  assert.equal(check.stderr, '', 'no warnings either');
  assert.match(check.stdout, /config OK/);

  // The example config uses paths relative to its own folder.
  const config = loadConfig(join(out, 'mtls-proxy.toml'), {});
  assert.equal(config.listeners[0]?.tls.cert, join(out, 'server.pem'));
  assert.equal(config.listeners[0]?.tls.clientAuth, 'require');
});

test('pki init refuses to overwrite unless --force, and --force tightens key modes', async (t) => {
  const out = tempDir(t);
  writeFileSync(join(out, 'server-key.pem'), 'precious', { mode: 0o644 });
  const refused = await runCli(['pki', 'init', '--out', out]);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr, /^error: refusing to overwrite .*server-key\.pem \(use --force\)\n$/);
  assert.equal(readFileSync(join(out, 'server-key.pem'), 'utf8'), 'precious');
  assert.deepEqual(readdirSync(out), ['server-key.pem'], 'nothing was written');

  const forced = await runCli(['pki', 'init', '--out', out, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(readFileSync(join(out, 'server-key.pem'), 'utf8'), /BEGIN PRIVATE KEY/);
  assert.equal(statSync(join(out, 'server-key.pem')).mode & 0o777, 0o600);
});

test('pki init without --out is a usage error', async () => {
  const result = await runCli(['pki', 'init']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /required option '--out <dir>'/);
});
