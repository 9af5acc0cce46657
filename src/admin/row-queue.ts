// The request log's write queue, held outside the JS heap, in the shape the flush binds.
//
// Why outside the heap: a queued row waits up to a batch (1000 rows, ~33 ms at 30k req/s) for
// its flush. Kept as the record objects, with the small young generation the proxy runs with,
// every record and its strings survived a scavenge or two and were promoted, and the old
// generation filled with dead rows: ~4% of the proxy's CPU per request, measured with
// bench/tools/ab.sh (two proxies side by side on one core).
//
// Why this shape: binding is most of the cost of a row in SQLite. better-sqlite3 pays ~65 ns
// per bound value through N-API and ~50 ns more per string (measured: 16-row INSERTs of the
// full row bound 2.65 µs/row, of literal values 0.78). Most columns repeat from request to
// request, so a row is split in two, in the queue as in the database (request-log.ts):
// - a context: listener, client address, subject, fingerprint, method, host, upstream,
//   endpoint, error. Each distinct context gets a small integer and is written once, as a
//   row of request_contexts.
// - its own values: id and path (their UTF-8 bytes, in one buffer), ts, status, bytes in and
//   out, duration (a Float64Array), and the context's integer. Eight values bound per row
//   instead of sixteen, two of them strings instead of ten.
// Nothing of a row stays on the JS heap between the request and the flush.
import type { RequestRecord } from '../http/context.ts';

const NUMS = 5;
/** Context fields: nine strings, as dictionary indexes (-1 for null). */
const CTX = 9;
/** Text bytes held before the buffer may grow; it grows by doubling up to MAX_TEXT_BYTES. */
const INITIAL_TEXT_BYTES = 256 * 1024;
/** Rows whose id and path do not fit in this many queued bytes are dropped (and counted). */
export const MAX_TEXT_BYTES = 16 * 1024 * 1024;
/** Strings and contexts start over (at a flush, when no queued row refers to them) beyond this many. */
export const CONTEXT_LIMIT = 4096;

/** Values bound per row, in this order (request_rows' columns after seq). */
export const ROW_COLUMNS = ['id', 'ts', 'path', 'status', 'bytes_in', 'bytes_out', 'duration_ms', 'ctx'] as const;
export const ROW_PARAMS = ROW_COLUMNS.length;
/** Values of a context, in this order (request_contexts' columns after k). */
export const CONTEXT_COLUMNS = ['listener', 'client_addr', 'client_subject', 'client_sha256', 'method', 'host', 'upstream', 'endpoint', 'error'] as const;

export type Values = Array<string | number | null>;

function hashOf(f: Int32Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < CTX; i++) h = Math.imul(h ^ f[i]!, 0x01000193);
  return h >>> 0;
}

export class RowQueue {
  readonly capacity: number;
  #length = 0;
  readonly #nums: Float64Array;
  readonly #ctxOf: Int32Array;
  /** Per row: where its id ends and where its path ends, in #text. */
  readonly #ends: Int32Array;
  #text: Buffer;
  #textUsed = 0;

  // strings -> dictionary index
  #dict: string[] = [];
  #dictIndex = new Map<string, number>();
  /** Per string field: the last string seen and its index (the common case: the same string again). */
  readonly #lastString: Array<string | null> = new Array<string | null>(CTX).fill(null);
  readonly #lastIndex = new Int32Array(CTX);

  // contexts: CTX fields each in #ctxFields; an open-addressing table of (index + 1), 0 = empty
  #ctxFields = new Int32Array(64 * CTX);
  #ctxCount = 0;
  #table = new Int32Array(128);
  readonly #cur = new Int32Array(CTX);
  readonly #last = new Int32Array(CTX).fill(-2);
  #lastCtx = -1;
  /** Bumped when the contexts start over: the writer starts a new range of context keys. */
  generation = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.#nums = new Float64Array(capacity * NUMS);
    this.#ctxOf = new Int32Array(capacity);
    this.#ends = new Int32Array(capacity * 2);
    this.#text = Buffer.allocUnsafe(INITIAL_TEXT_BYTES);
  }

  get length(): number {
    return this.#length;
  }

  /** Contexts made so far in this generation; those from an earlier count on are new to the writer. */
  get contexts(): number {
    return this.#ctxCount;
  }

  /** Copies the record in; false when the queue is full (rows or text bytes). */
  push(r: RequestRecord): boolean {
    const i = this.#length;
    if (i >= this.capacity) return false;
    // UTF-8 takes at most 3 bytes per UTF-16 unit
    const most = 3 * (r.id.length + r.path.length);
    if (this.#textUsed + most > this.#text.length && !this.#grow(most)) return false;
    let at = this.#textUsed;
    at += this.#text.write(r.id, at, 'utf8');
    this.#ends[i * 2] = at;
    at += this.#text.write(r.path, at, 'utf8');
    this.#ends[i * 2 + 1] = at;
    this.#textUsed = at;
    const n = i * NUMS;
    const nums = this.#nums;
    nums[n] = r.ts;
    nums[n + 1] = r.status;
    nums[n + 2] = r.bytesIn;
    nums[n + 3] = r.bytesOut;
    nums[n + 4] = r.durationMs;
    const cur = this.#cur;
    cur[0] = this.#ref(0, r.listener);
    cur[1] = this.#ref(1, r.clientAddr);
    cur[2] = this.#ref(2, r.clientSubject);
    cur[3] = this.#ref(3, r.clientSha256);
    cur[4] = this.#ref(4, r.method);
    cur[5] = this.#ref(5, r.host);
    cur[6] = this.#ref(6, r.upstream);
    cur[7] = this.#ref(7, r.endpoint);
    cur[8] = this.#ref(8, r.error);
    this.#ctxOf[i] = this.#context();
    this.#length = i + 1;
    return true;
  }

  /** Row `i`'s ROW_PARAMS values, written into `out` from `at`; its context is `base` + its index. */
  read(i: number, out: Values, at: number, base: number): void {
    const n = i * NUMS;
    const nums = this.#nums;
    const start = i === 0 ? 0 : this.#ends[i * 2 - 1]!;
    const idEnd = this.#ends[i * 2]!;
    out[at] = this.#text.toString('utf8', start, idEnd);
    out[at + 1] = nums[n]!;
    out[at + 2] = this.#text.toString('utf8', idEnd, this.#ends[i * 2 + 1]!);
    out[at + 3] = nums[n + 1]!;
    out[at + 4] = nums[n + 2]!;
    out[at + 5] = nums[n + 3]!;
    out[at + 6] = nums[n + 4]!;
    out[at + 7] = base + this.#ctxOf[i]!;
  }

  /** Context `k`'s values (CONTEXT_COLUMNS order), written into `out` from 0. */
  readContext(k: number, out: Values): void {
    const f = this.#ctxFields;
    const at = k * CTX;
    for (let j = 0; j < CTX; j++) {
      const ref = f[at + j]!;
      out[j] = ref < 0 ? null : this.#dict[ref]!;
    }
  }

  /** Empties the queue (after a flush wrote every row). */
  clear(): void {
    this.#length = 0;
    this.#textUsed = 0;
    // a burst of long paths grew the buffer: give the memory back
    if (this.#text.length > INITIAL_TEXT_BYTES) this.#text = Buffer.allocUnsafe(INITIAL_TEXT_BYTES);
    if (this.#dict.length > CONTEXT_LIMIT || this.#ctxCount > CONTEXT_LIMIT) {
      this.#dict = [];
      this.#dictIndex = new Map();
      this.#lastString.fill(null);
      this.#ctxFields = new Int32Array(64 * CTX);
      this.#table = new Int32Array(128);
      this.#ctxCount = 0;
      this.#last.fill(-2);
      this.#lastCtx = -1;
      this.generation++;
    }
  }

  #ref(field: number, s: string | null): number {
    if (s === null) return -1;
    if (s === this.#lastString[field]) return this.#lastIndex[field]!;
    let ref = this.#dictIndex.get(s);
    if (ref === undefined) {
      ref = this.#dict.length;
      this.#dict.push(s);
      this.#dictIndex.set(s, ref);
    }
    this.#lastString[field] = s;
    this.#lastIndex[field] = ref;
    return ref;
  }

  /** The index of the context in #cur: the last one again, found in the table, or a new one. */
  #context(): number {
    const cur = this.#cur;
    const last = this.#last;
    let same = true;
    for (let j = 0; j < CTX; j++) {
      if (cur[j] !== last[j]) {
        same = false;
        break;
      }
    }
    if (same) return this.#lastCtx;
    const table = this.#table;
    const mask = table.length - 1;
    let slot = hashOf(cur) & mask;
    for (;;) {
      const e = table[slot]!;
      if (e === 0) break;
      if (this.#fieldsEqual(e - 1)) return this.#remember(e - 1);
      slot = (slot + 1) & mask;
    }
    const k = this.#ctxCount++;
    if ((k + 1) * CTX > this.#ctxFields.length) {
      const f = new Int32Array(this.#ctxFields.length * 2);
      f.set(this.#ctxFields);
      this.#ctxFields = f;
    }
    this.#ctxFields.set(cur, k * CTX);
    table[slot] = k + 1;
    // keep the table at most half full
    if (this.#ctxCount * 2 > table.length) this.#rehash(table.length * 2);
    return this.#remember(k);
  }

  #remember(k: number): number {
    this.#last.set(this.#cur);
    this.#lastCtx = k;
    return k;
  }

  #fieldsEqual(k: number): boolean {
    const f = this.#ctxFields;
    const cur = this.#cur;
    const at = k * CTX;
    for (let j = 0; j < CTX; j++) if (f[at + j] !== cur[j]) return false;
    return true;
  }

  #rehash(size: number): void {
    const table = new Int32Array(size);
    const mask = size - 1;
    for (let k = 0; k < this.#ctxCount; k++) {
      let slot = hashOf(this.#ctxFields.subarray(k * CTX, k * CTX + CTX)) & mask;
      while (table[slot] !== 0) slot = (slot + 1) & mask;
      table[slot] = k + 1;
    }
    this.#table = table;
  }

  #grow(need: number): boolean {
    let size = this.#text.length;
    while (size < this.#textUsed + need) size *= 2;
    if (size > MAX_TEXT_BYTES) return false;
    const text = Buffer.allocUnsafe(size);
    this.#text.copy(text, 0, 0, this.#textUsed);
    this.#text = text;
    return true;
  }
}
