// Property: the request parser path (HttpParser + RequestHead + target rules, as downstream runs
// them) gives the same messages and the same error for the same bytes however they are split
// into chunks (TCP and TLS split anywhere), and its result is always well-formed messages
// followed by a known error code, never an exception.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { anyBytes, cuts, requestStream } from './support/generators.ts';
import { runBudgeted, shouldRun, showBytes } from './support/budget.ts';
import { REQUEST_ERROR_KINDS, invalidMessage, parseLikeDownstream, splitAt, summary, type ParseOutcome } from './support/parse-path.ts';

/**
 * The one split-dependence we accept: a head that is both over a size limit and malformed further
 * on may be refused for either (431/414 or 400), depending on whether a chunk boundary made llhttp
 * report the oversized span before it reached the bad byte. Both refuse and forward nothing.
 */
function sameRefusal(a: ParseOutcome, b: ParseOutcome): boolean {
  if (a.end.kind !== 'error' || b.end.kind !== 'error') return false;
  const limit = (k: string): boolean => k === 'HEADERS_TOO_LARGE' || k === 'TOO_MANY_HEADERS' || k === 'URI_TOO_LONG';
  return (limit(a.end.error.kind) || limit(b.end.error.kind)) && a.end.inBody === b.end.inBody;
}

test('parser path: split anywhere, same messages and same error; always valid messages or a known error', { timeout: 3_600_000 }, async (t) => {
  if (!shouldRun('parser-split')) return t.skip('FUZZ_ONLY');
  const input = fc.tuple(fc.oneof({ weight: 3, arbitrary: requestStream }, { weight: 1, arbitrary: anyBytes }), cuts);
  const property = fc.property(input, ([text, at]) => {
    const bytes = Buffer.from(text, 'latin1');
    const whole = parseLikeDownstream([bytes]);
    const split = parseLikeDownstream(splitAt(bytes, at.map((c) => (bytes.length === 0 ? 0 : c % bytes.length))));
    for (const m of whole.messages) {
      const bad = invalidMessage(m);
      assert.equal(bad, null, `accepted an invalid message: ${bad}`);
    }
    if (whole.end.kind === 'error') assert.ok(REQUEST_ERROR_KINDS.has(whole.end.error.kind), `unexpected error kind ${whole.end.error.kind}`);
    if (sameRefusal(whole, split)) {
      assert.deepEqual(summary({ ...split, end: whole.end }), summary(whole));
      return;
    }
    assert.deepEqual(summary(split), summary(whole));
  });
  await runBudgeted(t, 'parser-split', property, ([text, at]) => `${showBytes(text)} split at ${JSON.stringify(at)}`);
});
