// Runs a fast-check property for a time budget and reports what it did.
//   FUZZ_SECONDS  seconds per property (default 10; `npm run fuzz` has 4 properties, ~1 min)
//   FUZZ_SEED     the seed to run from (printed by every run); with FUZZ_PATH, replays a failure
//   FUZZ_PATH     the counterexample path fast-check printed for a failure
//   FUZZ_ONLY     run only the property with this name
// Every run prints `# <name>: <runs> inputs in <s> s, seed <seed>`; a failure prints the input and
// the command that reproduces it.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import fc from 'fast-check';

export function fuzzSeconds(): number {
  const v = Number(process.env.FUZZ_SECONDS ?? '10');
  return Number.isFinite(v) && v > 0 ? v : 10;
}

export function shouldRun(name: string): boolean {
  const only = process.env.FUZZ_ONLY;
  return only === undefined || only === '' || only === name;
}

export interface Budgeted {
  runs: number;
  seconds: number;
  seed: number;
}

/** Runs `property` until FUZZ_SECONDS elapse (or it fails); asserts no failure. */
export async function runBudgeted<T>(
  t: TestContext,
  name: string,
  property: fc.IRawProperty<[T]>,
  describe: (input: T) => string = (i) => fc.stringify(i),
  opts: { perInputTimeoutMs?: number; examples?: T[] } = {},
): Promise<Budgeted> {
  const seconds = fuzzSeconds();
  const seed = process.env.FUZZ_SEED !== undefined && process.env.FUZZ_SEED !== '' ? Number(process.env.FUZZ_SEED) : Date.now() ^ (Math.random() * 0x100000000);
  const path = process.env.FUZZ_PATH !== undefined && process.env.FUZZ_PATH !== '' ? process.env.FUZZ_PATH : undefined;
  const started = performance.now();
  const plugins = [fc.interruptAfterTimeLimit(seconds * 1000)];
  // a hung input is a failure (no hang is one of the invariants), not a stalled run
  if (opts.perInputTimeoutMs !== undefined) plugins.push(fc.timeout(opts.perInputTimeoutMs));
  // examples: inputs a run once found, checked first on every run (fast-check runs them before
  // the generated ones)
  const examples = (opts.examples ?? []).map((e): [T] => [e]);
  const details = await fc.check(property, { seed, path, numRuns: path !== undefined ? 1 : 1_000_000_000, plugins, examples });
  const elapsed = (performance.now() - started) / 1000;
  const line = `${name}: ${details.numRuns} inputs in ${elapsed.toFixed(1)} s, seed ${details.seed}${details.interrupted ? ' (time budget reached)' : ''}`;
  t.diagnostic(line);
  if (details.failed) {
    const input = details.counterexample ? describe((details.counterexample as unknown as [T])[0]) : '(none)';
    const err = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    const repro = `FUZZ_ONLY=${name} FUZZ_SEED=${details.seed} FUZZ_PATH=${details.counterexamplePath ?? ''} npm run fuzz`;
    t.diagnostic(`FAILED ${name} after ${details.numRuns} inputs and ${details.numShrinks} shrinks`);
    t.diagnostic(`input: ${input}`);
    t.diagnostic(`reproduce: ${repro}`);
    assert.fail(`${name}: ${err}\ninput: ${input}\nreproduce: ${repro}`);
  }
  assert.ok(details.numRuns > 0, `${name} ran no input`);
  return { runs: details.numRuns, seconds: elapsed, seed: details.seed };
}

/** Bytes shown for a failure report: a JSON string (escapes make CR, LF and NUL visible). */
export function showBytes(b: Buffer | string): string {
  return JSON.stringify(typeof b === 'string' ? b : b.toString('latin1'));
}
