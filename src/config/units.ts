// Durations and sizes are strings with units in the config ("30s", "64KiB"), as in Envoy's
// and HAProxy's configs, so that a bare number never leaves the reader guessing whether it
// means seconds or milliseconds. These parsers throw a plain Error with a message written for
// an operator; the schema wraps it in a ConfigError that carries the key path and line.

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

// Binary units are what the limits are usually thought of in (64KiB); decimal ones are
// accepted because "10KB" meaning 10000 bytes is what the SI prefix says.
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1_000,
  mb: 1_000_000,
  gb: 1_000_000_000,
  kib: 1_024,
  mib: 1_048_576,
  gib: 1_073_741_824,
};

const DURATION_RE = /^(\d{1,15}(?:\.\d{1,6})?)\s*([a-z]+)$/i;
const SIZE_RE = /^(\d{1,15}(?:\.\d{1,6})?)\s*([a-z]*)$/i;

// Scales in integer arithmetic: 2.3 * 1000 is 2299.9999999999995 in floating point.
function scale(amount: string, factor: number): number | null {
  const [whole = '0', fraction = ''] = amount.split('.');
  const denominator = 10 ** fraction.length;
  const fractional = Number(fraction === '' ? '0' : fraction) * factor;
  if (fractional % denominator !== 0) return null;
  return Number(whole) * factor + fractional / denominator;
}

const DURATION_HINT = 'expected a number with a unit: ms, s, m, h or d (e.g. "250ms", "30s", "5m")';
const SIZE_HINT = 'expected a number of bytes with an optional unit: B, KB, MB, GB, KiB, MiB or GiB (e.g. "64KiB")';

/** Parse "250ms", "30s", "1.5s", "5m", "1h", "7d" into whole milliseconds. */
export function parseDuration(text: string): number {
  const match = DURATION_RE.exec(text.trim());
  if (match === null) throw new Error(`invalid duration "${text}": ${DURATION_HINT}`);
  const [, amount = '', unit = ''] = match;
  const factor = DURATION_UNITS[unit.toLowerCase()];
  if (factor === undefined) throw new Error(`invalid duration "${text}": unknown unit "${unit}"; ${DURATION_HINT}`);
  const ms = scale(amount, factor);
  if (ms === null) throw new Error(`invalid duration "${text}": finer than a millisecond`);
  if (ms > Number.MAX_SAFE_INTEGER) throw new Error(`invalid duration "${text}": too large`);
  return ms;
}

/** Parse "512B", "1000", "10KB", "64KiB", "1MiB", "1GiB" into a whole number of bytes. */
export function parseSize(text: string): number {
  const match = SIZE_RE.exec(text.trim());
  if (match === null) throw new Error(`invalid size "${text}": ${SIZE_HINT}`);
  const [, amount = '', unit = ''] = match;
  const factor = unit === '' ? 1 : SIZE_UNITS[unit.toLowerCase()];
  if (factor === undefined) throw new Error(`invalid size "${text}": unknown unit "${unit}"; ${SIZE_HINT}`);
  const bytes = scale(amount, factor);
  if (bytes === null) throw new Error(`invalid size "${text}": not a whole number of bytes`);
  if (bytes > Number.MAX_SAFE_INTEGER) throw new Error(`invalid size "${text}": too large`);
  return bytes;
}

/** The shortest exact unit form of a duration, for messages and the admin API ("30s", "1500ms"). */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const factor = DURATION_UNITS[unit] ?? 1;
    if (ms !== 0 && ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}

/** The shortest exact binary-unit form of a size ("64KiB", "1000B"). */
export function formatSize(bytes: number): string {
  for (const unit of ['GiB', 'MiB', 'KiB'] as const) {
    const factor = SIZE_UNITS[unit.toLowerCase()] ?? 1;
    if (bytes !== 0 && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}
