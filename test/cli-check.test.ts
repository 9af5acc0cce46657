// `mtls-proxy check` end to end: real files, real certificates, the real bin in a child process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeTestPki, type TestPki } from './support/pki.ts';
import { hasStackTrace, runCli } from './support/run-cli.ts';

const DAY = 86_400_000;

interface Files {
  cert?: string;
  key?: string;
  extraTls?: string;
}

/** Writes a config into the PKI folder; returns its path and the 1-based line of each `key =`. */
function writeConfig(pki: TestPki, files: Files = {}): { file: string; lineOf: (needle: string) => number } {
  const text = [
    '[listeners.edge]',
    'address = "127.0.0.1:0"',
    'upstream = "backend"',
    '  [listeners.edge.tls]',
    `  cert = "${files.cert ?? 'server.pem'}"`,
    `  key = "${files.key ?? 'server-key.pem'}"`,
    '  client_ca = "ca.pem"',
    ...(files.extraTls === undefined ? [] : [files.extraTls]),
    '',
    '[upstreams.backend]',
    'endpoints = ["127.0.0.1:9443"]',
    '  [upstreams.backend.tls]',
    '  cert = "proxy.pem"',
    '  key = "proxy-key.pem"',
    '  ca = "ca.pem"',
    '',
  ].join('\n');
  const file = join(pki.dir, 'mtls-proxy.toml');
  writeFileSync(file, text);
  const lines = text.split('\n');
  return {
    file,
    lineOf: (needle) => {
      const i = lines.findIndex((l) => l.includes(needle));
      assert.ok(i >= 0, `no line contains ${needle}`);
      return i + 1;
    },
  };
}

async function setup(t: { after(fn: () => void): void }): Promise<TestPki> {
  const pki = await makeTestPki();
  t.after(() => pki.cleanup());
  pki.file('ca.pem', pki.ca.cert);
  pki.file('server.pem', pki.server.cert);
  pki.file('server-key.pem', pki.server.key);
  pki.file('proxy.pem', pki.proxyClient.cert);
  pki.file('proxy-key.pem', pki.proxyClient.key);
  return pki;
}

test('a good config passes: exit 0, summary on stdout, nothing on stderr', async (t) => {
  const pki = await setup(t);
  const { file } = writeConfig(pki);
  const result = await runCli(['check', '-c', file]);
  assert.equal(result.stderr, '');
  assert.equal(result.code, 0);
  assert.match(result.stdout, /^config OK: .*mtls-proxy\.toml \(1 listener, 1 upstream; 0 warnings\)\n$/);
});

test('a key that does not match its certificate fails with the key path and line', async (t) => {
  const pki = await setup(t);
  pki.file('client-key.pem', pki.client.key);
  const { file, lineOf } = writeConfig(pki, { key: 'client-key.pem' });
  const result = await runCli(['check', '-c', file]);
  assert.equal(result.code, 1);
  const line = lineOf('cert = "server.pem"');
  assert.match(result.stderr, new RegExp(`^error: listeners\\.edge\\.tls\\.cert \\(line ${line}\\): key does not match certificate`, 'm'));
  assert.equal(hasStackTrace(result.stderr), false);
  assert.equal(result.stdout, '');
});

test('an expired certificate is an error', async (t) => {
  const pki = await setup(t);
  const expired = await pki.issue({ cn: 'localhost', dns: ['localhost'], usage: ['server'], notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) });
  pki.file('expired.pem', expired.cert);
  pki.file('expired-key.pem', expired.key);
  const { file, lineOf } = writeConfig(pki, { cert: 'expired.pem', key: 'expired-key.pem' });
  const result = await runCli(['check', '-c', file]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, new RegExp(`^error: listeners\\.edge\\.tls\\.cert \\(line ${lineOf('expired.pem')}\\): certificate expired on \\d{4}-`, 'm'));
});

test('a listener certificate without serverAuth in its EKU is an error', async (t) => {
  const pki = await setup(t);
  pki.file('client.pem', pki.client.cert);
  pki.file('client-key.pem', pki.client.key);
  const { file, lineOf } = writeConfig(pki, { cert: 'client.pem', key: 'client-key.pem' });
  const result = await runCli(['check', '-c', file]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, new RegExp(`^error: listeners\\.edge\\.tls\\.cert \\(line ${lineOf('client.pem')}\\): extended key usage does not allow serverAuth.*clientAuth$`, 'm'));
});

test('a missing file is an error naming the key and the file', async (t) => {
  const pki = await setup(t);
  const { file, lineOf } = writeConfig(pki, { key: 'nowhere-key.pem' });
  const result = await runCli(['check', '-c', file]);
  assert.equal(result.code, 1);
  const expected = `error: listeners.edge.tls.key (line ${lineOf('nowhere-key.pem')}): cannot read ${join(pki.dir, 'nowhere-key.pem')}: no such file`;
  assert.ok(result.stderr.split('\n').includes(expected), result.stderr);
  assert.equal(hasStackTrace(result.stderr), false);
});

test('a certificate expiring within 30 days is a warning only: exit 0', async (t) => {
  const pki = await setup(t);
  const soon = await pki.issue({ cn: 'localhost', dns: ['localhost'], usage: ['server'], notAfter: new Date(Date.now() + 10 * DAY + 3_600_000) });
  pki.file('soon.pem', soon.cert);
  pki.file('soon-key.pem', soon.key);
  const { file, lineOf } = writeConfig(pki, { cert: 'soon.pem', key: 'soon-key.pem' });
  const result = await runCli(['check', '-c', file]);
  assert.equal(result.code, 0);
  assert.match(result.stderr, new RegExp(`^warning: listeners\\.edge\\.tls\\.cert \\(line ${lineOf('soon.pem')}\\): certificate expires in 10 days`, 'm'));
  assert.match(result.stdout, /config OK: .*1 warning\)/);
});

test('schema errors are listed one per line with key path and line; certificates are not checked then', async (t) => {
  const pki = await setup(t);
  const { file, lineOf } = writeConfig(pki, { extraTls: '  clent_auth = "require"\n  min_version = "TLSv1.0"' });
  const result = await runCli(['check', '-c', file]);
  assert.equal(result.code, 1);
  assert.deepEqual(result.stderr.trimEnd().split('\n'), [
    `error: listeners.edge.tls.clent_auth (line ${lineOf('clent_auth')}): unknown key (did you mean "client_auth"?)`,
    `error: listeners.edge.tls.min_version (line ${lineOf('min_version')}): must be one of "TLSv1.2", "TLSv1.3", got "TLSv1.0"`,
  ]);
});

test('usage errors exit 2; a missing config file exits 1; --help exits 0', async (t) => {
  const pki = await setup(t);
  const bogus = await runCli(['check', '--bogus']);
  assert.equal(bogus.code, 2);
  assert.match(bogus.stderr, /unknown option '--bogus'/);
  const unknown = await runCli(['chek']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'chek'/);
  const missing = await runCli(['check', '-c', join(pki.dir, 'absent.toml')]);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, `error: cannot read config file ${join(pki.dir, 'absent.toml')}: no such file\n`);
  const help = await runCli(['check', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /-c, --config <file>/);
});

test('the config path defaults to $MTLS_PROXY_CONFIG', async (t) => {
  const pki = await setup(t);
  const { file } = writeConfig(pki);
  const result = await runCli(['check'], { env: { ...process.env, MTLS_PROXY_CONFIG: file } });
  assert.equal(result.code, 0, result.stderr);
  assert.ok(result.stdout.includes(file));
});
