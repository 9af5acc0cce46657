// `mtls-proxy hash-password`: stdin in, a bcrypt hash out that admin auth will accept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { configFromObject } from '../src/config/load.ts';
import { runCli } from './support/run-cli.ts';

interface Bcrypt {
  compare(data: string, hash: string): Promise<boolean>;
  getRounds(hash: string): number;
}

async function bcrypt(): Promise<Bcrypt> {
  // bcrypt ships no types; its CommonJS exports arrive as the default export.
  const mod = (await import('bcrypt' as string)) as { default: Bcrypt };
  return mod.default;
}

test('drops exactly one trailing newline and prints a cost-12 hash of the rest', async () => {
  const { compare, getRounds } = await bcrypt();
  const result = await runCli(['hash-password'], { input: 'secret\n' });
  assert.equal(result.code, 0, result.stderr);
  const hash = result.stdout.trimEnd();
  assert.equal(result.stdout, `${hash}\n`);
  assert.match(hash, /^\$2b\$12\$[./A-Za-z0-9]{53}$/);
  assert.equal(getRounds(hash), 12);
  assert.equal(await compare('secret', hash), true);
  assert.equal(await compare('secret\n', hash), false);

  // The hash is what admin.password_hash accepts.
  const config = configFromObject({
    admin: { password_hash: hash },
    listeners: { l: { address: '127.0.0.1:0', upstream: 'u', tls: { cert: 'c', key: 'k' } } },
    upstreams: { u: { endpoints: ['127.0.0.1:1'] } },
  }, { baseDir: '/' });
  assert.equal(config.admin?.passwordHash, hash);
});

test('CRLF loses both characters; only one newline goes, other whitespace stays', async () => {
  const { compare } = await bcrypt();
  const crlf = await runCli(['hash-password'], { input: 'pa ss\r\n' });
  assert.equal(crlf.code, 0, crlf.stderr);
  assert.equal(await compare('pa ss', crlf.stdout.trimEnd()), true);
  const two = await runCli(['hash-password'], { input: 'secret\n\n' });
  assert.equal(two.code, 0, two.stderr);
  assert.equal(await compare('secret\n', two.stdout.trimEnd()), true);
  const none = await runCli(['hash-password'], { input: ' secret ' });
  assert.equal(await compare(' secret ', none.stdout.trimEnd()), true);
});

test('empty input, an over-long password and extra arguments are usage errors (exit 2)', async () => {
  for (const input of ['', '\n']) {
    const result = await runCli(['hash-password'], { input });
    assert.equal(result.code, 2, JSON.stringify(input));
    assert.match(result.stderr, /^error: empty password/);
    assert.equal(result.stdout, '');
  }
  const long = await runCli(['hash-password'], { input: `${'x'.repeat(73)}\n` });
  assert.equal(long.code, 2);
  assert.match(long.stderr, /longer than 72 bytes/);
  const extra = await runCli(['hash-password', 'secret'], { input: 'secret\n' });
  assert.equal(extra.code, 2);
  assert.match(extra.stderr, /too many arguments/);
  assert.equal(extra.stdout, '', 'a password given as an argument is not hashed');
});
