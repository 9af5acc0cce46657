// The SQLite request log (PRODUCT.md "Request log row"): one row per request, written off the
// data path. The onRequest subscriber only copies the record into a bounded queue outside the
// JS heap (row-queue.ts; full: drop and count, never block); a timer, or a full batch, writes
// the queue in one transaction with prepared multi-row INSERTs. Queries and retention (by age and max_rows, on a timer) run on a
// reader thread with its own connection (request-log-worker.ts): they can take hundreds of ms
// on a large table, and the proxy's thread must not wait for them.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { RequestLogConfig } from '../config/types.ts';
import { ConfigError } from '../errors.ts';
import type { RequestRecord } from '../http/context.ts';
import type { Logger } from '../log.ts';
import { codeFile } from '../paths.ts';
import type { ProxyEvents } from './types.ts';

import { CONTEXTS_IN_USE_FROM, type RequestFilter, type RequestRow } from './request-log-query.ts';
import type { ReaderInit, ReaderReply, ReaderRequest } from './request-log-worker.ts';
import { CONTEXT_COLUMNS, ROW_COLUMNS, ROW_PARAMS, RowQueue, type Values } from './row-queue.ts';

export type { RequestFilter, RequestRow } from './request-log-query.ts';

export interface RequestLogOptions {
  /** Rows held in memory waiting for a flush; more are dropped and counted. */
  queueLimit?: number;
  flushIntervalMs?: number;
  /** A flush starts as soon as this many rows are queued. */
  batchSize?: number;
  retentionIntervalMs?: number;
}

export interface RequestLogStats {
  queued: number;
  dropped: number;
  written: number;
  /** Seconds the proxy's thread spent writing rows (flushes that committed and that failed). */
  writeSeconds: number;
}

const CONFIG_KEY = 'request_log.path';
// A startup that finds the file locked waits this long: long enough to ride out another
// process's flush, short enough that a held lock is a prompt startup error.
const OPEN_BUSY_TIMEOUT_MS = 250;
// While running, every statement blocks the event loop for as long as it waits on a lock:
// keep it short and let the queue absorb the retry.
const RUN_BUSY_TIMEOUT_MS = 20;
// Bound the WAL file after checkpoints; the default lets it keep its largest size.
const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;

// Every index is paid on every insert, on the proxy's thread, so there are two:
// - ts: the unfiltered newest-first page, `since`, retention by age. It carries the rowid, so
//   "ORDER BY ts DESC, seq DESC LIMIT n" reads it in order and stops after n rows.
// - ts for error rows only (a partial index, WHERE status >= 400): "4xx / 5xx / status 503,
//   newest first" reads it in order. Successful requests, the bulk of the traffic, never touch it.
// The other filters (2xx/3xx, upstream, listener, client subject) walk ts newest first and
// test each row: common values meet their matches within a few rows, and a rare one costs a
// scan of the table on that query only, instead of an index update on every request.
// Measured (200k rows, 500 per transaction, CPU per row): the earlier ts + (status / 100, ts) +
// (client_subject, ts) with one INSERT per row 4.1-5.5 µs; these two with 16 rows per INSERT 2.3 µs.
//
// Schema 2: the contract's `requests` is a view. A row's repeated columns (listener, client,
// host, upstream, ...) live once per distinct combination in request_contexts, and a row of
// request_rows holds only its own values and the context's key: 92 bytes of file per row
// instead of 242, and an INSERT binds eight values with no join. Measured (300k rows, batches
// of 500, CPU per row): insert 1.44-1.64 -> 1.06-1.22 µs, checkpoint 0.39 -> 0.18 µs.
// A file of schema 1 (a `requests` table) is migrated when it is opened.
const SCHEMA_VERSION = 2;
const CONTEXT_TABLE = `CREATE TABLE IF NOT EXISTS request_contexts (
  k INTEGER PRIMARY KEY,
  listener TEXT NOT NULL,
  client_addr TEXT NOT NULL,
  client_subject TEXT,
  client_sha256 TEXT,
  method TEXT NOT NULL,
  host TEXT NOT NULL,
  upstream TEXT,
  endpoint TEXT,
  error TEXT
);
-- what the reader thread's sweep of unused contexts must leave alone: the writer's current range
CREATE TABLE IF NOT EXISTS request_log_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS request_rows (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  path TEXT NOT NULL,
  status INTEGER NOT NULL,
  bytes_in INTEGER NOT NULL,
  bytes_out INTEGER NOT NULL,
  duration_ms REAL NOT NULL,
  ctx INTEGER NOT NULL
);
`;
const INDEXES_AND_VIEW = `
CREATE INDEX IF NOT EXISTS request_rows_ts ON request_rows (ts);
CREATE INDEX IF NOT EXISTS request_rows_errors_ts ON request_rows (ts) WHERE status >= 400;
CREATE VIEW IF NOT EXISTS requests AS
  SELECT r.seq AS seq, r.id AS id, r.ts AS ts, c.listener AS listener, c.client_addr AS client_addr,
    c.client_subject AS client_subject, c.client_sha256 AS client_sha256, c.method AS method, c.host AS host,
    r.path AS path, r.status AS status, c.upstream AS upstream, c.endpoint AS endpoint,
    r.bytes_in AS bytes_in, r.bytes_out AS bytes_out, r.duration_ms AS duration_ms, c.error AS error
  FROM request_rows AS r JOIN request_contexts AS c ON c.k = r.ctx;
PRAGMA user_version = ${SCHEMA_VERSION};
`;
const CONTEXT_LIST = CONTEXT_COLUMNS.join(', ');
// Schema 1 -> 2: each distinct context once, then every row with its context's key (IS: NULL
// matches NULL). The index makes the join a lookup; it goes with the old table.
const MIGRATE_FROM_1 = `
CREATE INDEX migrate_contexts ON request_contexts (${CONTEXT_LIST});
INSERT INTO request_contexts (${CONTEXT_LIST}) SELECT DISTINCT ${CONTEXT_LIST} FROM requests;
INSERT INTO request_rows (seq, id, ts, path, status, bytes_in, bytes_out, duration_ms, ctx)
  SELECT r.seq, r.id, r.ts, r.path, r.status, r.bytes_in, r.bytes_out, r.duration_ms, c.k
  FROM requests AS r JOIN request_contexts AS c ON ${CONTEXT_COLUMNS.map((n) => `c.${n} IS r.${n}`).join(' AND ')};
DROP INDEX migrate_contexts;
DROP TABLE requests;
`;

/** Rows per multi-row INSERT; a batch's remainder goes through the one-row statement. */
const ROWS_PER_INSERT = 16;

type Db = Database.Database;

function sqliteCode(err: unknown): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : '';
}

function openError(path: string, err: unknown): ConfigError {
  const code = sqliteCode(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' || code.startsWith('SQLITE_BUSY_')) {
    return new ConfigError(CONFIG_KEY, `request log ${path} is locked by another process (is another mtls-proxy using it?)`, { cause: err });
  }
  return new ConfigError(CONFIG_KEY, `cannot open request log ${path}: ${detail}`, { cause: err });
}

/** Creates or migrates the schema inside the caller's transaction; returns the rows migrated. */
function createSchema(db: Db): number {
  const requests = db.prepare("SELECT type FROM sqlite_schema WHERE name = 'requests'").pluck().get();
  db.exec(CONTEXT_TABLE);
  let migrated = 0;
  if (requests === 'table') {
    migrated = (db.prepare('SELECT count(*) FROM requests').pluck().get() as number);
    db.exec(MIGRATE_FROM_1);
  }
  db.exec(INDEXES_AND_VIEW);
  return migrated;
}

export class RequestLog {
  readonly #db: Db;
  readonly #cfg: RequestLogConfig;
  readonly #log: Logger;
  readonly #flushIntervalMs: number;
  readonly #batchSize: number;
  readonly #retentionIntervalMs: number;
  readonly #insertAll: (rows: RowQueue) => void;
  readonly #reader: Worker;
  /** Replies the reader owes, by request id. */
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #readerError: Error | null = null;
  readonly #queue: RowQueue;
  /** The key of context 0 of the queue's generation in the file; NaN before the first flush. */
  #contextBase = Number.NaN;
  #dropped = 0;
  #written = 0;
  #writeMs = 0;
  #flushTimer: NodeJS.Timeout | null = null;
  #retentionTimer: NodeJS.Timeout | null = null;
  #flushSoon: NodeJS.Immediate | null = null;
  /**
   * Set while flushes fail, so a broken disk logs once, not every 200ms: the level the failure
   * was logged at (busy is a warning), which the recovery line uses too.
   */
  #failing: 'warn' | 'error' | null = null;
  #closed = false;
  #closing: Promise<void> = Promise.resolve();

  /**
   * Opens (creating the folder, file and schema) or throws a ConfigError naming request_log.path.
   * One process writes a file: with several workers, the primary owns the log and the workers'
   * records reach it by IPC; two writers would contend for the lock on every flush.
   */
  static open(cfg: RequestLogConfig, logger: Logger, opts: RequestLogOptions = {}): RequestLog {
    try {
      mkdirSync(dirname(cfg.path), { recursive: true });
    } catch (err) {
      throw new ConfigError(CONFIG_KEY, `cannot create the folder for request log ${cfg.path}: ${(err as Error).message}`, { cause: err });
    }
    let db: Db;
    try {
      db = new Database(cfg.path, { timeout: OPEN_BUSY_TIMEOUT_MS });
    } catch (err) {
      throw openError(cfg.path, err);
    }
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
      // Take the write lock now: a file another process holds locked fails here, at startup,
      // instead of at the first flush.
      db.exec('BEGIN IMMEDIATE');
      const migrated = createSchema(db);
      db.exec('COMMIT');
      if (migrated > 0) logger.info({ path: cfg.path, rows: migrated }, `request log: migrated ${migrated} rows to schema ${SCHEMA_VERSION}`);
      db.pragma(`busy_timeout = ${RUN_BUSY_TIMEOUT_MS}`);
      // The reader thread checkpoints the WAL (copying pages into the file and fsyncing it):
      // with SQLite's default this writer would, inside a flush, every 1000 pages.
      db.pragma('wal_autocheckpoint = 0');
      return new RequestLog(db, cfg, logger, opts);
    } catch (err) {
      if (db.inTransaction) db.exec('ROLLBACK');
      db.close();
      throw openError(cfg.path, err);
    }
  }

  private constructor(db: Db, cfg: RequestLogConfig, logger: Logger, opts: RequestLogOptions) {
    this.#db = db;
    this.#cfg = cfg;
    this.#log = logger;
    this.#queue = new RowQueue(opts.queueLimit ?? 10_000);
    this.#flushIntervalMs = opts.flushIntervalMs ?? 200;
    this.#batchSize = opts.batchSize ?? 1000;
    this.#retentionIntervalMs = opts.retentionIntervalMs ?? 60_000;
    // A row is its own values and its context's key (row-queue.ts). The queue numbers its
    // contexts 0, 1, ... within a generation; the writer stores them from a base past every key
    // in the file, taken when a generation's first flush starts, and writes each context once.
    const addContext = db.prepare(`INSERT INTO request_contexts (k, ${CONTEXT_LIST}) VALUES (${new Array<string>(CONTEXT_COLUMNS.length + 1).fill('?').join(', ')})`);
    const nextKey = db.prepare('SELECT coalesce(max(k), -1) + 1 FROM request_contexts').pluck();
    const keepFrom = db.prepare(`INSERT INTO request_log_state (key, value) VALUES ('${CONTEXTS_IN_USE_FROM}', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`);
    const row = `(${new Array<string>(ROW_PARAMS).fill('?').join(', ')})`;
    const insert = (rows: number): Database.Statement =>
      db.prepare(`INSERT INTO request_rows (${ROW_COLUMNS.join(', ')}) VALUES ${new Array<string>(rows).fill(row).join(', ')}`);
    const insertOne = insert(1);
    const insertMany = insert(ROWS_PER_INSERT);
    // argument arrays reused by every run: no allocation per row. Spread into run(), they are
    // read as arguments, which better-sqlite3 binds without an element lookup each.
    const args: Values = new Array<string | number | null>(ROW_PARAMS * ROWS_PER_INSERT).fill(null);
    const one: Values = new Array<string | number | null>(ROW_PARAMS).fill(null);
    const context: Values = new Array<string | number | null>(CONTEXT_COLUMNS.length).fill(null);
    // What the file holds of the queue's contexts; advanced only once a flush commits (a failed
    // one rolls its contexts back with its rows, and the retry writes them again).
    let generation = -1;
    let contextsWritten = 0;
    const write = db.transaction((rows: RowQueue): number => {
      let from = contextsWritten;
      let base = this.#contextBase;
      if (rows.generation !== generation) {
        base = nextKey.get() as number;
        keepFrom.run(base);
        from = 0;
      }
      for (let k = from; k < rows.contexts; k++) {
        rows.readContext(k, context);
        addContext.run(base + k, ...context);
      }
      const n = rows.length;
      let i = 0;
      for (; i + ROWS_PER_INSERT <= n; i += ROWS_PER_INSERT) {
        for (let j = 0; j < ROWS_PER_INSERT; j++) rows.read(i + j, args, j * ROW_PARAMS, base);
        insertMany.run(...args);
      }
      for (; i < n; i++) {
        rows.read(i, one, 0, base);
        insertOne.run(...one);
      }
      return base;
    });
    this.#insertAll = (rows: RowQueue): void => {
      this.#contextBase = write(rows);
      generation = rows.generation;
      contextsWritten = rows.contexts;
    };
    // .ts from a checkout, .js from dist/ (a bundle entry of its own there)
    const workerFile = codeFile('admin/request-log-worker');
    this.#reader = new Worker(workerFile, { workerData: { path: cfg.path } satisfies ReaderInit });
    this.#reader.unref();
    this.#reader.on('message', this.#onReply);
    this.#reader.on('error', (err) => {
      this.#log.error({ err }, 'request log reader thread failed; queries and retention stop, writes go on');
      this.#readerStopped(err);
    });
    this.#reader.on('exit', () => this.#readerStopped(new Error('the request log reader thread has stopped')));
  }

  /** Subscribes to finished requests. The subscriber only enqueues. */
  attach(events: Pick<ProxyEvents, 'onRequest'>): void {
    events.onRequest(this.#enqueue);
  }

  readonly #enqueue = (r: RequestRecord): void => {
    const q = this.#queue;
    if (this.#closed || !q.push(r)) {
      this.#dropped++;
      return;
    }
    // A full batch is written on the next turn of the event loop, never inside the request's own.
    if (q.length >= this.#batchSize && this.#flushSoon === null && this.#flushTimer !== null) {
      this.#flushSoon = setImmediate(this.#flushNow);
    }
  };

  readonly #flushNow = (): void => {
    this.#flushSoon = null;
    this.flush();
  };

  /** Starts the flush and retention timers (the server calls this; nothing runs on import). */
  start(): void {
    if (this.#closed || this.#flushTimer !== null) return;
    this.#flushTimer = setInterval(() => this.flush(), this.#flushIntervalMs).unref();
    this.#retentionTimer = setInterval(() => {
      this.applyRetention().catch((err: unknown) => {
        if (!this.#closed) this.#log.error({ err }, 'request log retention failed');
      });
    }, this.#retentionIntervalMs).unref();
    if (this.#queue.length >= this.#batchSize) this.#flushSoon = setImmediate(this.#flushNow);
  }

  /** Writes every queued row in one transaction. On failure the rows stay queued for the next try. */
  flush(): void {
    const rows = this.#queue;
    if (rows.length === 0 || !this.#db.open) return;
    const t0 = performance.now();
    try {
      this.#insertAll(rows);
    } catch (err) {
      if (this.#failing === null) {
        // Busy: the reader thread (a query, a checkpoint) held the lock past the busy timeout.
        // That passes, and nothing is lost, so it is a warning; anything else is an error.
        const code = sqliteCode(err);
        this.#failing = code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED') ? 'warn' : 'error';
        this.#log[this.#failing]({ err, queued: rows.length }, this.#failing === 'warn' ? 'request log busy; rows stay queued and are written at the next flush' : 'request log write failed; rows stay queued, new ones are dropped when the queue is full');
      }
      return;
    } finally {
      this.#writeMs += performance.now() - t0;
    }
    // at the failure's level, so whoever saw the failure sees the recovery
    if (this.#failing !== null) this.#log[this.#failing]({ rows: rows.length }, 'request log writes recovered');
    this.#failing = null;
    this.#written += rows.length;
    rows.clear();
  }

  /** Newest first (by start time). `limit` is capped at 10000. Answered by the reader thread. */
  query(filter: RequestFilter): Promise<RequestRow[]> {
    return this.#ask({ id: 0, op: 'query', filter }) as Promise<RequestRow[]>;
  }

  /** SQLite's plan for a query (EXPLAIN QUERY PLAN details): which index serves which filter. */
  queryPlan(filter: RequestFilter): Promise<string[]> {
    return this.#ask({ id: 0, op: 'plan', filter }) as Promise<string[]>;
  }

  /**
   * Deletes rows older than the retention, then the oldest beyond max_rows, on the reader
   * thread, a few thousand rows per transaction; then, once the contexts have grown past
   * SWEEP_CONTEXTS_OVER, the contexts no row uses any more.
   */
  async applyRetention(now: number = Date.now()): Promise<{ deleted: number; contextsDeleted: number }> {
    return await (this.#ask({ id: 0, op: 'retention', cutoff: now - this.#cfg.retentionMs, maxRows: this.#cfg.maxRows }) as Promise<{ deleted: number; contextsDeleted: number }>);
  }

  #ask(req: ReaderRequest): Promise<unknown> {
    if (this.#closed) return Promise.reject(new Error('the request log is closed'));
    if (this.#readerError !== null) return Promise.reject(this.#readerError);
    req.id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(req.id, { resolve, reject });
      // the reader only keeps the process alive while it owes a reply
      if (this.#pending.size === 1) this.#reader.ref();
      this.#reader.postMessage(req);
    });
  }

  readonly #onReply = (m: ReaderReply): void => {
    const p = this.#pending.get(m.id);
    if (p === undefined) return;
    this.#pending.delete(m.id);
    if (this.#pending.size === 0) this.#reader.unref();
    if (m.ok) p.resolve(m.result);
    else {
      const E = m.error.name === 'RangeError' ? RangeError : Error;
      p.reject(Object.assign(new E(m.error.message), m.error.code === undefined ? {} : { code: m.error.code }));
    }
  };

  #readerStopped(err: Error): void {
    // nobody checkpoints any more: the writer goes back to SQLite's own, so the WAL stays bounded
    if (this.#readerError === null && this.#db.open) this.#db.pragma('wal_autocheckpoint = 1000');
    this.#readerError ??= err;
    for (const p of this.#pending.values()) p.reject(this.#readerError);
    this.#pending.clear();
  }

  get stats(): RequestLogStats {
    return { queued: this.#queue.length, dropped: this.#dropped, written: this.#written, writeSeconds: this.#writeMs / 1000 };
  }

  /** Stops the timers, writes what is queued, closes the database and stops the reader thread. Idempotent. */
  close(): Promise<void> {
    if (this.#closed) return this.#closing;
    this.#closed = true;
    if (this.#flushTimer !== null) clearInterval(this.#flushTimer);
    if (this.#retentionTimer !== null) clearInterval(this.#retentionTimer);
    if (this.#flushSoon !== null) clearImmediate(this.#flushSoon);
    this.#flushTimer = this.#retentionTimer = this.#flushSoon = null;
    this.flush();
    this.#dropped += this.#queue.length;
    this.#queue.clear();
    this.#db.close();
    this.#readerStopped(new Error('the request log is closed'));
    this.#closing = this.#reader.terminate().then(() => undefined);
    return this.#closing;
  }
}

/** A row for the JSON API: `ts` as an ISO 8601 string. */
export function requestRowToJson(row: RequestRow): Record<string, unknown> {
  return { ...row, ts: new Date(row.ts).toISOString() };
}
