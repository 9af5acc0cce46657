// Reading the config: TOML text -> plain object -> ${ENV} expansion -> schema -> Config.
// smol-toml reports positions only for syntax errors, so the lines that schema errors point
// at come from a light scan of the text for table headers and keys (indexKeyLines below).
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { ConfigError } from '../errors.ts';
import type { Config } from './types.ts';
import { ConfigErrors, validateConfig, type LineOf } from './schema.ts';
import { isTable } from './section.ts';

export { ConfigErrors } from './schema.ts';

export interface ConfigFromObjectOptions {
  /** Folder that relative paths resolve against. */
  baseDir: string;
  env?: NodeJS.ProcessEnv;
  /** Absolute path of the file the object came from; null for configs built in memory. */
  source?: string | null;
  /** Maps a key path to its 1-based line in the source text, for error messages. */
  lineOf?: LineOf;
}

export interface LoadedConfig {
  config: Config;
  /** The line where a key path ("listeners.edge.tls.cert") or its nearest enclosing table is written. */
  lineOf: LineOf;
}

/** Read, parse and validate a TOML config file. Throws ConfigErrors listing every problem. */
export function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  return loadConfigFile(path, env).config;
}

/** As loadConfig, also returning the key -> line index so later checks can point at lines too. */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (err) {
    const code = err instanceof Error && 'code' in err ? err.code : null;
    const reason = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : err instanceof Error ? err.message : String(err);
    throw new ConfigErrors([new ConfigError('', `cannot read config file ${absolute}: ${reason}`, { cause: err })]);
  }
  return parseConfigDocument(text, absolute, env);
}

/** Parse and validate TOML text as if it were read from `sourcePath`. */
export function parseConfigText(text: string, sourcePath: string, env: NodeJS.ProcessEnv = process.env): Config {
  return parseConfigDocument(text, resolve(sourcePath), env).config;
}

function parseConfigDocument(text: string, sourcePath: string, env: NodeJS.ProcessEnv): LoadedConfig {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    if (err instanceof TomlError) {
      // The message carries a multi-line code frame; the first line is the reason.
      const reason = (err.message.split('\n')[0] ?? 'invalid TOML').replace(/^Invalid TOML document:\s*/, '');
      throw new ConfigErrors([new ConfigError('', `TOML syntax error at line ${err.line}, column ${err.column}: ${reason}`, { line: err.line, cause: err })]);
    }
    throw err;
  }
  const lines = indexKeyLines(text);
  const lineOf: LineOf = (keyPath) => lookupLine(lines, keyPath);
  const config = configFromObject(raw, { baseDir: dirname(sourcePath), env, source: sourcePath, lineOf });
  return { config, lineOf };
}

/** Validate an already-parsed, TOML-shaped object (snake_case keys). Throws ConfigErrors. */
export function configFromObject(raw: unknown, opts: ConfigFromObjectOptions): Config {
  const lineOf = opts.lineOf ?? (() => null);
  const errors: ConfigError[] = [];
  const expanded = expandEnv(raw, [], opts.env ?? process.env, (path, message) => {
    errors.push(new ConfigError(path, message, { line: lineOf(path) }));
  });
  return validateConfig(expanded, {
    baseDir: resolve(opts.baseDir),
    source: opts.source ?? null,
    lineOf,
    initialErrors: errors,
  });
}

// "${NAME}" is replaced by the variable; "$${NAME}" is a literal "${NAME}" for the rare value
// that needs one. Names follow POSIX shell rules so "${ x }" stays an error, not a lookup.
const ENV_REF = /\$(\$?)\{([^}]*)\}/g;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function expandEnv(value: unknown, path: Array<string | number>, env: NodeJS.ProcessEnv, fail: (path: string, message: string) => void): unknown {
  if (typeof value === 'string') {
    if (!value.includes('${')) return value;
    return value.replace(ENV_REF, (whole, escape: string, name: string) => {
      if (escape === '$') return whole.slice(1);
      if (!ENV_NAME.test(name)) {
        fail(formatKeyPath(path), `"\${${name}}" is not a valid environment variable reference`);
        return whole;
      }
      const found = env[name];
      if (found === undefined) {
        fail(formatKeyPath(path), `environment variable ${name} is not set`);
        return whole;
      }
      return found;
    });
  }
  if (Array.isArray(value)) return value.map((item, i) => expandEnv(item, [...path, i], env, fail));
  if (isTable(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = expandEnv(item, [...path, key], env, fail);
    return out;
  }
  return value;
}

/** "listeners.edge.routes[0].upstream" from ['listeners', 'edge', 'routes', 0, 'upstream']. */
export function formatKeyPath(path: ReadonlyArray<string | number>): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? part : `.${part}`;
  return out;
}

function lookupLine(lines: ReadonlyMap<string, number>, keyPath: string): number | null {
  // A missing key has no line of its own: point at the nearest table that should hold it.
  let path = keyPath;
  for (;;) {
    const line = lines.get(path);
    if (line !== undefined) return line;
    const cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
    if (cut <= 0) return null;
    path = path.slice(0, cut);
  }
}

const BARE_KEY = /^[A-Za-z0-9_-]+/;

/**
 * Map every table header and key in TOML text to the 1-based line where it is first written.
 * Array tables get indices ("listeners.edge.routes[1].host"). Keys inside inline tables and
 * multi-line arrays are not indexed; their lookups fall back to the enclosing key's line,
 * which for single-line inline tables is the right line anyway.
 */
export function indexKeyLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  const arrayCounts = new Map<string, number>();
  const record = (segments: readonly string[], line: number): void => {
    // Record every prefix too: [listeners.edge.tls] implicitly opens listeners.edge.
    for (let i = 1; i <= segments.length; i++) {
      const key = withIndices(segments.slice(0, i), arrayCounts);
      if (!lines.has(key)) lines.set(key, line);
    }
  };
  let table: string[] = [];
  let depth = 0;
  let multiline: '"""' | "'''" | null = null;
  const source = text.split(/\r?\n/);
  for (let n = 0; n < source.length; n++) {
    const line = source[n] ?? '';
    const lineNo = n + 1;
    let pos = 0;
    if (multiline !== null) {
      const end = findClosing(line, 0, multiline);
      if (end < 0) continue;
      pos = end;
    } else if (depth === 0) {
      const head = line.trimStart();
      pos = line.length - head.length;
      if (head.startsWith('[')) {
        const isArray = head.startsWith('[[');
        const keys = readKeys(head, isArray ? 2 : 1);
        if (keys === null) continue;
        if (isArray) {
          const parent = withIndices(keys.segments.slice(0, -1), arrayCounts);
          const last = keys.segments[keys.segments.length - 1] ?? '';
          const resolved = parent === '' ? last : `${parent}.${last}`;
          arrayCounts.set(resolved, (arrayCounts.get(resolved) ?? -1) + 1);
        }
        table = keys.segments;
        record(table, lineNo);
        continue;
      }
      const keys = readKeys(head, 0);
      if (keys === null || head[keys.end] !== '=') continue;
      record([...table, ...keys.segments], lineNo);
      pos += keys.end + 1;
    }
    const state = scanValue(line, pos, depth);
    depth = state.depth;
    multiline = state.multiline;
  }
  return lines;
}

// A header like [listeners.edge.routes.match] after [[listeners.edge.routes]] belongs to the
// latest element of that array, so each array-table prefix gets its current index appended.
function withIndices(segments: readonly string[], arrayCounts: ReadonlyMap<string, number>): string {
  let out = '';
  for (const segment of segments) {
    out = out === '' ? segment : `${out}.${segment}`;
    const index = arrayCounts.get(out);
    if (index !== undefined) out += `[${index}]`;
  }
  return out;
}

/** Dotted key (bare or quoted parts) starting at `start`; `end` is the index after it and any spaces. */
function readKeys(text: string, start: number): { segments: string[]; end: number } | null {
  const segments: string[] = [];
  let i = start;
  for (;;) {
    while (text[i] === ' ' || text[i] === '\t') i++;
    const quote = text[i];
    if (quote === '"' || quote === "'") {
      const close = text.indexOf(quote, i + 1);
      if (close < 0) return null;
      const body = text.slice(i + 1, close);
      segments.push(quote === '"' ? body.replace(/\\(.)/g, '$1') : body);
      i = close + 1;
    } else {
      const bare = BARE_KEY.exec(text.slice(i));
      if (bare === null) return null;
      segments.push(bare[0]);
      i += bare[0].length;
    }
    while (text[i] === ' ' || text[i] === '\t') i++;
    if (text[i] !== '.') return { segments, end: i };
    i++;
  }
}

function findClosing(line: string, from: number, delimiter: '"""' | "'''"): number {
  for (let i = from; i < line.length; i++) {
    if (delimiter === '"""' && line[i] === '\\') {
      i++;
      continue;
    }
    if (line.startsWith(delimiter, i)) {
      let end = i + 3;
      // Up to two extra quotes may end the string's content: """a"""" is `a"`.
      while (end < line.length && line[end] === delimiter[0] && end < i + 5) end++;
      return end;
    }
  }
  return -1;
}

/** Track bracket depth and open multi-line strings across a value so the next line is read right. */
function scanValue(line: string, from: number, startDepth: number): { depth: number; multiline: '"""' | "'''" | null } {
  let depth = startDepth;
  for (let i = from; i < line.length; i++) {
    const ch = line[i];
    if (ch === '#') break;
    if (ch === '[' || ch === '{') depth++;
    else if (ch === ']' || ch === '}') depth = Math.max(0, depth - 1);
    else if (ch === '"' || ch === "'") {
      const triple = ch === '"' ? '"""' : "'''";
      if (line.startsWith(triple, i)) {
        const end = findClosing(line, i + 3, triple);
        if (end < 0) return { depth, multiline: triple };
        i = end - 1;
        continue;
      }
      let j = i + 1;
      while (j < line.length && line[j] !== ch) j += ch === '"' && line[j] === '\\' ? 2 : 1;
      i = j;
    }
  }
  return { depth, multiline: null };
}
