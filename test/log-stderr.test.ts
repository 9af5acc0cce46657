// The JSON logger's own stderr destination (src/log.ts): asynchronous sonic-boom, flushed at
// exit, and quiet rather than crashing when stderr goes away. Each case is its own process,
// since what is tested is the process's stderr and its exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const LOG = fileURLToPath(new URL('../src/log.ts', import.meta.url));

function child(script: string): ReturnType<typeof spawn> {
  return spawn(process.execPath, ['--input-type=module', '-e', `import { createLogger } from ${JSON.stringify(LOG)};\n${script}`], { stdio: ['ignore', 'ignore', 'pipe'] });
}

test('lines still buffered when the process exits are written', async () => {
  // 2000 lines logged in one tick, then exit: the asynchronous destination has written at
  // most the first batch when process.exit runs; the rest goes out in the exit hook.
  const p = child(`const log = createLogger({ level: 'info', format: 'json' });
for (let i = 0; i < 2000; i++) log.info({ i, pad: 'x'.repeat(200) }, 'line');
log.warn('last words');
process.exit(3);`);
  let err = '';
  p.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((res) => p.on('close', res));
  assert.equal(code, 3);
  const lines = err.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 2001);
  assert.match(lines.at(-1)!, /"level":40,.*"msg":"last words"/);
  assert.deepEqual(lines.slice(0, -1).map((l) => (JSON.parse(l) as { i: number }).i), Array.from({ length: 2000 }, (_, i) => i));
});

test('a closed stderr (EPIPE) stops the logging, not the process', { timeout: 15_000 }, async (t) => {
  const p = child(`const log = createLogger({ level: 'info', format: 'json' });
process.stdin.resume();
const t = setInterval(() => { for (let i = 0; i < 50; i++) log.info({ i }, 'into a closed pipe'); }, 5);
setTimeout(() => { clearInterval(t); process.exit(0); }, 600);`);
  t.after(() => p.kill('SIGKILL'));
  p.stderr!.once('data', () => p.stderr!.destroy());
  const code = await new Promise<number | null>((res) => p.on('close', res));
  assert.equal(code, 0, 'the process ran to its own exit');
});
