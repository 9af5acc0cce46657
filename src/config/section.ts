// Typed reads from one TOML table, recording a ConfigError (key path + line) for each problem
// instead of throwing, so the schema can read everything and report every mistake at once.
// A read that fails returns a harmless placeholder; the schema throws before anyone sees it.
import { isAbsolute, resolve } from 'node:path';
import { ConfigError } from '../errors.ts';
import type { HostPort } from './types.ts';
import { parseDuration, parseSize } from './units.ts';

export type LineOf = (keyPath: string) => number | null;

export class Issues {
  readonly errors: ConfigError[];
  readonly lineOf: LineOf;
  readonly baseDir: string;
  constructor(lineOf: LineOf, baseDir: string, initial: readonly ConfigError[] = []) {
    this.errors = [...initial];
    this.lineOf = lineOf;
    this.baseDir = baseDir;
  }
  add(path: string, message: string): void {
    // The first problem on a key is the cause; an unset ${VAR} would otherwise also be
    // reported as the malformed address it leaves behind.
    if (this.errors.some((e) => e.path === path)) return;
    this.errors.push(new ConfigError(path, message, { line: this.lineOf(path) }));
  }
  /** In file order; problems without a line (configs built in memory) keep their order, last. */
  sorted(): ConfigError[] {
    return this.errors
      .map((error, i) => ({ error, i }))
      .sort((a, b) => (a.error.line ?? Infinity) - (b.error.line ?? Infinity) || a.i - b.i)
      .map(({ error }) => error);
  }
}

export function isTable(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === null || proto === Object.prototype;
}

export class Section {
  /** Key path of this table ("listeners.edge.tls"); '' for the root. */
  readonly path: string;
  /** The table's own key ("edge" for listeners.edge). */
  readonly name: string;
  readonly #raw: Readonly<Record<string, unknown>>;
  readonly #issues: Issues;

  constructor(issues: Issues, path: string, name: string, raw: Readonly<Record<string, unknown>>, allowed: readonly string[]) {
    this.#issues = issues;
    this.path = path;
    this.name = name;
    this.#raw = raw;
    for (const key of Object.keys(raw)) {
      if (allowed.includes(key)) continue;
      const near = closest(key, allowed);
      this.fail(key, near === null ? 'unknown key' : `unknown key (did you mean "${near}"?)`);
    }
  }

  static root(issues: Issues, raw: unknown, allowed: readonly string[]): Section {
    if (isTable(raw)) return new Section(issues, '', '', raw, allowed);
    issues.add('', `config must be a table of sections, got ${Section.show(raw)}`);
    return new Section(issues, '', '', {}, allowed);
  }

  /** How a value is described in messages: its TOML type, plus the value when short. */
  static show(value: unknown): string {
    if (typeof value === 'string') return value.length <= 60 ? JSON.stringify(value) : 'a long string';
    if (typeof value === 'number') return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
    if (typeof value === 'boolean') return `the boolean ${value}`;
    if (typeof value === 'bigint') return 'a very large integer';
    if (Array.isArray(value)) return 'an array';
    if (value instanceof Date) return 'a date';
    if (isTable(value)) return 'a table';
    return String(value);
  }

  at(key: string): string {
    return this.path === '' ? key : `${this.path}.${key}`;
  }

  has(key: string): boolean {
    return this.#raw[key] !== undefined;
  }

  value(key: string): unknown {
    return this.#raw[key];
  }

  fail(key: string, message: string): void {
    this.#issues.add(this.at(key), message);
  }

  failAt(path: string, message: string): void {
    this.#issues.add(path, message);
  }

  /** A sub-table whose keys all have defaults: absent reads as empty. */
  child(key: string, allowed: readonly string[]): Section {
    return this.optionalChild(key, allowed) ?? new Section(this.#issues, this.at(key), key, {}, allowed);
  }

  /** A sub-table whose absence means something (admin, health_check): absent reads as null. */
  optionalChild(key: string, allowed: readonly string[]): Section | null {
    const value = this.#raw[key];
    if (value === undefined) return null;
    if (!isTable(value)) {
      this.fail(key, `must be a table, got ${Section.show(value)}`);
      return null;
    }
    return new Section(this.#issues, this.at(key), key, value, allowed);
  }

  /** A table of named tables ([listeners.edge], [listeners.admin_api]), each validated alike. */
  namedChildren(key: string, allowed: readonly string[], required: boolean): Section[] {
    const value = this.#raw[key];
    if (value === undefined || (isTable(value) && Object.keys(value).length === 0)) {
      if (required) this.fail(key, `at least one [${this.at(key)}.NAME] is required`);
      return [];
    }
    if (!isTable(value)) {
      this.fail(key, `must be a table of named sections, got ${Section.show(value)}`);
      return [];
    }
    const out: Section[] = [];
    for (const [name, item] of Object.entries(value)) {
      const path = `${this.at(key)}.${name}`;
      if (isTable(item)) out.push(new Section(this.#issues, path, name, item, allowed));
      else this.failAt(path, `must be a table ([${path}]), got ${Section.show(item)}`);
    }
    return out;
  }

  /** [[key]] entries, addressed as key[0], key[1] in messages. */
  arrayOfTables(key: string, allowed: readonly string[]): Section[] {
    const value = this.#raw[key];
    if (value === undefined) return [];
    if (!Array.isArray(value)) {
      this.fail(key, `must be an array of tables ([[${this.at(key)}]]), got ${Section.show(value)}`);
      return [];
    }
    const out: Section[] = [];
    value.forEach((item: unknown, i) => {
      const path = `${this.at(key)}[${i}]`;
      if (isTable(item)) out.push(new Section(this.#issues, path, String(i), item, allowed));
      else this.failAt(path, `must be a table, got ${Section.show(item)}`);
    });
    return out;
  }

  string(key: string): string | undefined {
    const value = this.#raw[key];
    if (value === undefined || typeof value === 'string') return value;
    this.fail(key, `must be a string, got ${Section.show(value)}`);
    return undefined;
  }

  requiredString(key: string): string {
    const value = this.string(key);
    if (value === undefined && !this.has(key)) this.fail(key, 'is required');
    else if (value === '') this.fail(key, 'must not be empty');
    return value ?? '';
  }

  oneOf<T extends string>(key: string, values: readonly T[], fallback: T): T {
    const value = this.#raw[key];
    if (value === undefined) return fallback;
    const found = values.find((v) => v === value);
    if (found !== undefined) return found;
    this.fail(key, `must be one of ${values.map((v) => `"${v}"`).join(', ')}, got ${Section.show(value)}`);
    return fallback;
  }

  bool(key: string, fallback: boolean): boolean {
    const value = this.#raw[key];
    if (value === undefined) return fallback;
    if (typeof value === 'boolean') return value;
    this.fail(key, `must be true or false, got ${Section.show(value)}`);
    return fallback;
  }

  int(key: string, fallback: number, min: number): number {
    const value = this.#raw[key];
    if (value === undefined) return fallback;
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min) return value;
    this.fail(key, `must be a whole number of at least ${min}, got ${Section.show(value)}`);
    return fallback;
  }

  /** Milliseconds from "250ms"/"30s"/...; zero only where it means "no wait" rather than "never". */
  duration(key: string, fallbackMs: number, opts: { allowZero?: boolean } = {}): number {
    const value = this.#raw[key];
    if (value === undefined) return fallbackMs;
    if (typeof value !== 'string') {
      this.fail(key, `must be a duration string with a unit such as "30s" or "250ms", got ${Section.show(value)}`);
      return fallbackMs;
    }
    try {
      const ms = parseDuration(value);
      if (ms === 0 && opts.allowZero !== true) this.fail(key, 'must be longer than zero');
      return ms;
    } catch (err) {
      this.fail(key, messageOf(err));
      return fallbackMs;
    }
  }

  /** Bytes from "64KiB"/"1MiB"/"1000", or a bare integer number of bytes. */
  size(key: string, fallback: number): number {
    const value = this.#raw[key];
    if (value === undefined) return fallback;
    let bytes: number;
    try {
      if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) bytes = value;
      else if (typeof value === 'string') bytes = parseSize(value);
      else throw new Error(`must be a size such as "64KiB" or a number of bytes, got ${Section.show(value)}`);
    } catch (err) {
      this.fail(key, messageOf(err));
      return fallback;
    }
    if (bytes === 0) this.fail(key, 'must be larger than zero');
    return bytes;
  }

  strings(key: string): string[] {
    const value = this.#raw[key];
    if (value === undefined) return [];
    if (!Array.isArray(value)) {
      this.fail(key, `must be an array of strings, got ${Section.show(value)}`);
      return [];
    }
    const out: string[] = [];
    value.forEach((item: unknown, i) => {
      if (typeof item === 'string') out.push(item);
      else this.failAt(`${this.at(key)}[${i}]`, `must be a string, got ${Section.show(item)}`);
    });
    return out;
  }

  /** An absolute path; relative ones resolve against the config file's folder. */
  file(key: string): string | null {
    const value = this.string(key);
    if (value === undefined) return null;
    if (value === '') {
      this.fail(key, 'must not be empty; leave the key out instead');
      return null;
    }
    return isAbsolute(value) ? value : resolve(this.#issues.baseDir, value);
  }

  requiredFile(key: string): string {
    const value = this.file(key);
    if (value === null && !this.has(key)) this.fail(key, 'is required');
    return value ?? '';
  }

  address(key: string, fallback: string, opts: { allowZeroPort: boolean }): HostPort {
    const value = this.string(key) ?? fallback;
    const result = parseHostPort(value, { allowZeroPort: opts.allowZeroPort, requireHost: false });
    if (typeof result !== 'string') return result;
    this.fail(key, result);
    return { host: '', port: 0 };
  }

  requiredAddress(key: string, opts: { allowZeroPort: boolean }): HostPort {
    if (!this.has(key)) {
      this.fail(key, 'is required, e.g. "0.0.0.0:8443"');
      return { host: '', port: 0 };
    }
    return this.address(key, '', opts);
  }
}

const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9_.-]*[A-Za-z0-9])?$/;

/**
 * "host:port", "[::1]:port", or ":port" (all IPv4 interfaces, as Go's net.Listen reads it).
 * Returns the parsed address, or an error message for the operator.
 */
export function parseHostPort(text: string, opts: { allowZeroPort: boolean; requireHost: boolean }): HostPort | string {
  const example = opts.requireHost ? '"10.0.0.5:443" or "[::1]:443"' : '"0.0.0.0:8443", "[::1]:8443" or ":8443"';
  let host: string;
  let portText: string;
  const bracketed = /^\[([0-9A-Fa-f:.]+(?:%[\w.-]+)?)\]:(.*)$/.exec(text);
  if (bracketed !== null) {
    host = bracketed[1] ?? '';
    portText = bracketed[2] ?? '';
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return `"${text}" has no port; expected ${example}`;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return `"${text}": an IPv6 address needs brackets, e.g. "[::1]:8443"`;
    if (host !== '' && !HOST_NAME.test(host)) return `"${text}" has an invalid host "${host}"`;
  }
  if (host === '') {
    if (opts.requireHost) return `"${text}" has no host; expected ${example}`;
    host = '0.0.0.0';
  }
  if (!/^\d{1,5}$/.test(portText)) return `"${text}" has an invalid port "${portText}"; expected ${example}`;
  const port = Number(portText);
  const min = opts.allowZeroPort ? 0 : 1;
  if (port < min || port > 65535) return `"${text}": port must be between ${min} and 65535`;
  return { host, port };
}

// Typos are the common case for an unknown key; a suggestion within two edits saves a lookup.
function closest(key: string, allowed: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = 3;
  for (const candidate of allowed) {
    const d = editDistance(key, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
