import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDuration, formatSize, parseDuration, parseSize } from '../src/config/units.ts';

test('durations: every unit, fractions, whitespace', () => {
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('7d'), 604_800_000);
  assert.equal(parseDuration('1.5s'), 1_500);
  // 2.3 * 1000 is 2299.9999999999995 in floating point; the parser must not round-trip through it.
  assert.equal(parseDuration('2.3s'), 2_300);
  assert.equal(parseDuration('0.25h'), 900_000);
  assert.equal(parseDuration(' 10 s '), 10_000);
  assert.equal(parseDuration('0s'), 0);
  assert.equal(parseDuration('10S'), 10_000);
});

test('durations: bad values fail with a message naming the value and the units', () => {
  for (const bad of ['', '30', 's', '-1s', '1.5.2s', '10 seconds', '1w', '1e3ms', 'NaNs', '0.0001s', '1.5ms']) {
    assert.throws(() => parseDuration(bad), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.ok(err.message.includes(`"${bad}"`), err.message);
      return true;
    }, `expected ${JSON.stringify(bad)} to be rejected`);
  }
  assert.throws(() => parseDuration('30'), /ms, s, m, h or d/);
  assert.throws(() => parseDuration('3w'), /unknown unit "w"/);
});

test('sizes: binary and decimal units, bare bytes', () => {
  assert.equal(parseSize('512B'), 512);
  assert.equal(parseSize('1000'), 1000);
  assert.equal(parseSize('10KB'), 10_000);
  assert.equal(parseSize('64KiB'), 65_536);
  assert.equal(parseSize('1MiB'), 1_048_576);
  assert.equal(parseSize('1GiB'), 1_073_741_824);
  assert.equal(parseSize('2MB'), 2_000_000);
  assert.equal(parseSize('1.5KiB'), 1_536);
  assert.equal(parseSize('8 kib'), 8_192);
});

test('sizes: bad values fail clearly', () => {
  for (const bad of ['', 'KiB', '-1KiB', '1.5B', '12 parsecs', '1TiB', '0x10']) {
    assert.throws(() => parseSize(bad), (err: unknown) => err instanceof Error && err.message.includes(`"${bad}"`), `expected ${JSON.stringify(bad)} to be rejected`);
  }
  assert.throws(() => parseSize('1TiB'), /unknown unit "TiB"/);
  assert.throws(() => parseSize('1.5B'), /whole number of bytes/);
});

test('format helpers give the shortest exact form and parse back to the same value', () => {
  assert.equal(formatDuration(30_000), '30s');
  assert.equal(formatDuration(1_500), '1500ms');
  assert.equal(formatDuration(604_800_000), '7d');
  assert.equal(formatDuration(0), '0ms');
  assert.equal(formatSize(65_536), '64KiB');
  assert.equal(formatSize(1000), '1000B');
  for (const ms of [1, 999, 60_000, 90_000, 3_600_000]) assert.equal(parseDuration(formatDuration(ms)), ms);
  for (const bytes of [1, 1024, 1_048_576, 1_000_000]) assert.equal(parseSize(formatSize(bytes)), bytes);
});
