// log.format = "pretty": human-readable lines from pino-pretty, in-process (no transport worker).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { createLogger } from '../src/log.ts';

test('a pretty logger writes readable lines, secrets redacted', async () => {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (d: Buffer) => chunks.push(d));
  const log = createLogger({ level: 'info', format: 'pretty' }, out);
  log.info({ user: { password: 'hunter2' }, upstream: 'origin' }, 'listening');
  for (let i = 0; i < 40 && chunks.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
  const text = Buffer.concat(chunks).toString();
  assert.match(text, /INFO/);
  assert.match(text, /listening/);
  assert.match(text, /upstream: "origin"/);
  assert.doesNotMatch(text, /^\{/, 'not JSON');
  assert.doesNotMatch(text, /hunter2/);
});
