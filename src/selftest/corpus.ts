// The smuggling / conformance corpus: one JSON file per case in fuzz/corpus/, shipped with the
// package and replayed by `mtls-proxy selftest` and by test/fuzz-corpus.test.ts.
//
// A case's bytes are JSON strings whose characters are bytes (U+0000-U+00FF, latin1), or a list
// of such strings and repeats sized from the listener's limits, so a case written for the
// default 64 KiB head limit still means "one byte over the limit" under any config:
//   "request": ["GET / HTTP/1.1\r\nHost: localhost\r\nX: ", {"repeat": "a", "times": "max_header_size"}, "\r\n\r\n"]
import { readFileSync, readdirSync } from 'node:fs';
import { join, sep } from 'node:path';
import type { ListenerLimits } from '../config/types.ts';
import { PACKAGE_ROOT } from '../paths.ts';

export type LimitName = 'max_header_size' | 'max_headers' | 'max_uri_length';
export type Part = string | { repeat: string; times: number | LimitName; plus?: number };
export type Bytes = string | Part[];

/** One message the origin must have received, re-parsed from what the proxy sent it. */
export interface ForwardedSpec {
  method: string;
  /** As the client sent it (the selftest applies the listener's routes to it); may use repeats. */
  target: Bytes;
  /** Body bytes (latin1); omitted: not checked. */
  body?: string;
  /** Headers that must be present with exactly this value (names case-insensitive). */
  headers?: Record<string, string>;
  /** Headers that must not be present. */
  absent?: string[];
}

export interface CaseExpectation {
  /** Status of every response the client received, in order. */
  responses: number[];
  /** MTLS_ERR_<error> in the proxy's own (last) answer, and in its request log record. */
  error?: string;
  /** The proxy closed the client connection. */
  closed: boolean;
  /** Complete messages the origin received, in order; nothing else may reach it. */
  forwarded: ForwardedSpec[];
  /** The last response was cut short by a close (the contract for an upstream dying mid-body). */
  cut?: boolean;
}

export interface CorpusCase {
  name: string;
  family: string;
  /** Where the case comes from: CVE, RFC section, peer test suite, fuzz finding. */
  source: string;
  description: string;
  request: Bytes;
  /** Offsets at which the client's bytes are split into separate writes (with a pause). */
  writes?: number[];
  /** The origin answers the case's first request with these bytes instead of its own. */
  response?: { raw: Bytes; close?: boolean };
  /** The origin may hold an incomplete message (head forwarded, body cut by an error). */
  partial?: boolean;
  expect: CaseExpectation;
  /** File the case was read from. */
  file: string;
}

/** fuzz/corpus/ in the package (a built package ships it too). */
export const CORPUS_DIR = join(PACKAGE_ROOT, 'fuzz', 'corpus') + sep;

const LIMITS: readonly LimitName[] = ['max_header_size', 'max_headers', 'max_uri_length'];

export class CorpusError extends Error {}

function fail(file: string, msg: string): never {
  throw new CorpusError(`${file}: ${msg}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkBytes(file: string, what: string, v: unknown): Bytes {
  const parts = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(parts) || parts.length === 0) fail(file, `${what} must be a string or a non-empty list of parts`);
  for (const p of parts) {
    if (typeof p === 'string') {
      for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) > 0xff) fail(file, `${what}: character U+${p.charCodeAt(i).toString(16)} is not a byte (use \\u0000-\\u00ff)`);
    } else if (isObject(p)) {
      if (typeof p.repeat !== 'string' || p.repeat === '') fail(file, `${what}: a repeat part needs a non-empty "repeat" string`);
      const t = p.times;
      if (!(typeof t === 'number' && Number.isInteger(t) && t >= 0) && !LIMITS.includes(t as LimitName)) fail(file, `${what}: "times" must be a count or one of ${LIMITS.join(', ')}`);
      if (p.plus !== undefined && !Number.isInteger(p.plus)) fail(file, `${what}: "plus" must be an integer`);
    } else {
      fail(file, `${what}: a part must be a string or {"repeat", "times"}`);
    }
  }
  return v as Bytes;
}

function checkCase(file: string, raw: unknown): CorpusCase {
  if (!isObject(raw)) fail(file, 'a case is a JSON object');
  for (const k of ['name', 'family', 'source', 'description']) {
    if (typeof raw[k] !== 'string' || raw[k] === '') fail(file, `"${k}" must be a non-empty string`);
  }
  const known = new Set(['name', 'family', 'source', 'description', 'request', 'writes', 'response', 'partial', 'expect']);
  for (const k of Object.keys(raw)) if (!known.has(k)) fail(file, `unknown key "${k}"`);
  const request = checkBytes(file, 'request', raw.request);
  if (raw.writes !== undefined && (!Array.isArray(raw.writes) || !raw.writes.every((n) => Number.isInteger(n) && n > 0))) fail(file, '"writes" must be a list of positive offsets');
  let response: CorpusCase['response'];
  if (raw.response !== undefined) {
    if (!isObject(raw.response)) fail(file, '"response" must be an object {raw, close?}');
    response = { raw: checkBytes(file, 'response.raw', raw.response.raw), close: raw.response.close === true };
  }
  const e = raw.expect;
  if (!isObject(e)) fail(file, '"expect" must be an object');
  if (!Array.isArray(e.responses) || !e.responses.every((s) => Number.isInteger(s))) fail(file, 'expect.responses must be a list of status codes');
  if (typeof e.closed !== 'boolean') fail(file, 'expect.closed must be true or false');
  if (e.error !== undefined && (typeof e.error !== 'string' || !/^[A-Z_]+$/.test(e.error))) fail(file, 'expect.error must be an error kind such as "AMBIGUOUS_FRAMING"');
  if (!Array.isArray(e.forwarded)) fail(file, 'expect.forwarded must be a list');
  for (const f of e.forwarded) {
    if (!isObject(f) || typeof f.method !== 'string') fail(file, 'each forwarded message needs "method" and "target"');
    checkBytes(file, 'forwarded target', f.target);
  }
  return {
    name: raw.name as string,
    family: raw.family as string,
    source: raw.source as string,
    description: raw.description as string,
    request,
    writes: raw.writes as number[] | undefined,
    response,
    partial: raw.partial === true,
    expect: e as unknown as CaseExpectation,
    file,
  };
}

/** Every case in `dir` (default: the bundled corpus), sorted by file name. Throws CorpusError. */
export function loadCorpus(dir: string = CORPUS_DIR): CorpusCase[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  const cases: CorpusCase[] = [];
  const names = new Set<string>();
  for (const f of files) {
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(join(dir, f), 'utf8'));
    } catch (err) {
      fail(f, `not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    const c = checkCase(f, raw);
    if (names.has(c.name)) fail(f, `duplicate case name "${c.name}"`);
    names.add(c.name);
    cases.push(c);
  }
  return cases;
}

function limitValue(name: LimitName, limits: Pick<ListenerLimits, 'maxHeaderSize' | 'maxHeaders' | 'maxUriLength'>): number {
  if (name === 'max_header_size') return limits.maxHeaderSize;
  if (name === 'max_headers') return limits.maxHeaders;
  return limits.maxUriLength;
}

/** The bytes of a request or response, repeats sized from `limits`. */
export function renderBytes(b: Bytes, limits: Pick<ListenerLimits, 'maxHeaderSize' | 'maxHeaders' | 'maxUriLength'>): Buffer {
  if (typeof b === 'string') return Buffer.from(b, 'latin1');
  const out: Buffer[] = [];
  for (const p of b) {
    if (typeof p === 'string') out.push(Buffer.from(p, 'latin1'));
    else {
      const times = (typeof p.times === 'number' ? p.times : limitValue(p.times, limits)) + (p.plus ?? 0);
      out.push(Buffer.from(p.repeat.repeat(Math.max(0, times)), 'latin1'));
    }
  }
  return Buffer.concat(out);
}
