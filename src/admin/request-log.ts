// The SQLite request log (PRODUCT.md "Request log row"): one row per request, written off the
// data path. The onRequest subscriber only pushes the record onto a bounded queue (full: drop
// and count, never block); a timer, or a full batch, writes the queue in one transaction with
// prepared multi-row INSERTs. Queries and retention (by age and max_rows, on a timer) run on a
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
import type { ProxyEvents } from './types.ts';

import { COLUMNS, type RequestFilter, type RequestRow } from './request-log-query.ts';
import type { ReaderInit, ReaderReply, ReaderRequest } from './request-log-worker.ts';

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
const SCHEMA = `
CREATE TABLE IF NOT EXISTS requests (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  listener TEXT NOT NULL,
  client_addr TEXT NOT NULL,
  client_subject TEXT,
  client_sha256 TEXT,
  method TEXT NOT NULL,
  host TEXT NOT NULL,
  path TEXT NOT NULL,
  status INTEGER NOT NULL,
  upstream TEXT,
  endpoint TEXT,
  bytes_in INTEGER NOT NULL,
  bytes_out INTEGER NOT NULL,
  duration_ms REAL NOT NULL,
  error TEXT
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE INDEX IF NOT EXISTS requests_errors_ts ON requests (ts) WHERE status >= 400;
-- indexes of earlier versions, each a cost on every insert
DROP INDEX IF EXISTS requests_status_class_ts;
DROP INDEX IF EXISTS requests_client_subject_ts;
DROP INDEX IF EXISTS requests_upstream_ts;
DROP INDEX IF EXISTS requests_listener_ts;
`;

/** Rows per multi-row INSERT; a batch's remainder goes through the one-row statement. */
const ROWS_PER_INSERT = 16;
const FIELDS = 16;

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

/** The row's values in COLUMNS order, at `at` in `args`. */
function setRowArgs(args: Array<string | number | null>, at: number, r: RequestRecord): void {
  args[at] = r.id;
  args[at + 1] = r.ts;
  args[at + 2] = r.listener;
  args[at + 3] = r.clientAddr;
  args[at + 4] = r.clientSubject;
  args[at + 5] = r.clientSha256;
  args[at + 6] = r.method;
  args[at + 7] = r.host;
  args[at + 8] = r.path;
  args[at + 9] = r.status;
  args[at + 10] = r.upstream;
  args[at + 11] = r.endpoint;
  args[at + 12] = r.bytesIn;
  args[at + 13] = r.bytesOut;
  args[at + 14] = r.durationMs;
  args[at + 15] = r.error;
}

export class RequestLog {
  readonly #db: Db;
  readonly #cfg: RequestLogConfig;
  readonly #log: Logger;
  readonly #queueLimit: number;
  readonly #flushIntervalMs: number;
  readonly #batchSize: number;
  readonly #retentionIntervalMs: number;
  readonly #insertAll: (rows: readonly RequestRecord[]) => void;
  readonly #reader: Worker;
  /** Replies the reader owes, by request id. */
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #readerError: Error | null = null;
  #queue: RequestRecord[] = [];
  #dropped = 0;
  #written = 0;
  #flushTimer: NodeJS.Timeout | null = null;
  #retentionTimer: NodeJS.Timeout | null = null;
  #flushSoon: NodeJS.Immediate | null = null;
  /** Set while flushes fail, so a broken disk logs once, not every 200ms. */
  #failing = false;
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
      db.exec(SCHEMA);
      db.exec('COMMIT');
      db.pragma(`busy_timeout = ${RUN_BUSY_TIMEOUT_MS}`);
      // The reader thread checkpoints the WAL (copying pages into the file and fsyncing it):
      // with SQLite's default this writer would, inside a flush, every 1000 pages.
      db.pragma('wal_autocheckpoint = 0');
      return new RequestLog(db, cfg, logger, opts);
    } catch (err) {
      db.close();
      throw openError(cfg.path, err);
    }
  }

  private constructor(db: Db, cfg: RequestLogConfig, logger: Logger, opts: RequestLogOptions) {
    this.#db = db;
    this.#cfg = cfg;
    this.#log = logger;
    this.#queueLimit = opts.queueLimit ?? 10_000;
    this.#flushIntervalMs = opts.flushIntervalMs ?? 200;
    this.#batchSize = opts.batchSize ?? 500;
    this.#retentionIntervalMs = opts.retentionIntervalMs ?? 60_000;
    const row = `(${new Array<string>(FIELDS).fill('?').join(', ')})`;
    const insertOne = db.prepare(`INSERT INTO requests (${COLUMNS}) VALUES ${row}`);
    const insertMany = db.prepare(`INSERT INTO requests (${COLUMNS}) VALUES ${new Array<string>(ROWS_PER_INSERT).fill(row).join(', ')}`);
    // one argument array, reused by every statement run: no allocation per row
    const args = new Array<string | number | null>(FIELDS * ROWS_PER_INSERT).fill(null);
    this.#insertAll = db.transaction((rows: readonly RequestRecord[]) => {
      let i = 0;
      for (; i + ROWS_PER_INSERT <= rows.length; i += ROWS_PER_INSERT) {
        for (let j = 0; j < ROWS_PER_INSERT; j++) setRowArgs(args, j * FIELDS, rows[i + j]!);
        insertMany.run(args);
      }
      if (i < rows.length) {
        const one = args.slice(0, FIELDS);
        for (; i < rows.length; i++) {
          setRowArgs(one, 0, rows[i]!);
          insertOne.run(one);
        }
      }
    });
    // The source's extension is the running module's: .ts from a checkout, .js from dist/.
    const workerFile = new URL(`./request-log-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);
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
    if (this.#closed || q.length >= this.#queueLimit) {
      this.#dropped++;
      return;
    }
    q.push(r);
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
    try {
      this.#insertAll(rows);
    } catch (err) {
      if (!this.#failing) this.#log.error({ err, queued: rows.length }, 'request log write failed; rows stay queued, new ones are dropped when the queue is full');
      this.#failing = true;
      return;
    }
    if (this.#failing) this.#log.info({ rows: rows.length }, 'request log writes recovered');
    this.#failing = false;
    this.#written += rows.length;
    this.#queue = [];
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
   * thread, a few thousand rows per transaction.
   */
  async applyRetention(now: number = Date.now()): Promise<{ deleted: number }> {
    return await (this.#ask({ id: 0, op: 'retention', cutoff: now - this.#cfg.retentionMs, maxRows: this.#cfg.maxRows }) as Promise<{ deleted: number }>);
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
    return { queued: this.#queue.length, dropped: this.#dropped, written: this.#written };
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
    this.#queue = [];
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
