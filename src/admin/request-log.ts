// The SQLite request log (PRODUCT.md "Request log row"): one row per request, written off the
// data path. The onRequest subscriber only pushes the record onto a bounded queue (full: drop
// and count, never block); a timer, or a full batch, writes the queue in one transaction with a
// prepared INSERT. Retention by age and max_rows runs on its own timer.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { RequestLogConfig } from '../config/types.ts';
import { ConfigError } from '../errors.ts';
import type { RequestRecord } from '../http/context.ts';
import type { Logger } from '../log.ts';
import type { ProxyEvents } from './types.ts';

/** A row as the API serves it: the contract's columns, `ts` in ms since the epoch. */
export interface RequestRow {
  id: string;
  ts: number;
  listener: string;
  client_addr: string;
  client_subject: string | null;
  client_sha256: string | null;
  method: string;
  host: string;
  path: string;
  status: number;
  upstream: string | null;
  endpoint: string | null;
  bytes_in: number;
  bytes_out: number;
  duration_ms: number;
  error: string | null;
}

export interface RequestFilter {
  limit: number;
  /** Exact status, or a class: { class: 5 } is 500-599. */
  status?: number | { class: number };
  /** Only rows that started at or after this time (ms since the epoch). */
  since?: number;
  upstream?: string;
  listener?: string;
  clientSubject?: string;
}

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
const MAX_QUERY_LIMIT = 10_000;
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

const COLUMNS = 'id, ts, listener, client_addr, client_subject, client_sha256, method, host, path, status, upstream, endpoint, bytes_in, bytes_out, duration_ms, error';

// Query shapes: each filter adds a fixed SQL fragment, values are always bound parameters. One
// prepared statement per combination of present filters, built on first use. F_ERRORS is set
// when the status filter only matches 400 and up: its term is the partial index's own WHERE,
// written the same way, which is what lets SQLite use that index.
const F_ERRORS = 1;
const F_STATUS = 2;
const F_CLASS = 4;
const F_SINCE = 8;
const F_UPSTREAM = 16;
const F_LISTENER = 32;
const F_SUBJECT = 64;
const FRAGMENTS: ReadonlyArray<readonly [number, string]> = [
  [F_ERRORS, 'status >= 400'],
  [F_STATUS, 'status = ?'],
  [F_CLASS, 'status >= ? AND status < ?'],
  [F_SINCE, 'ts >= ?'],
  [F_UPSTREAM, 'upstream = ?'],
  [F_LISTENER, 'listener = ?'],
  [F_SUBJECT, 'client_subject = ?'],
];

/** Rows per multi-row INSERT; a batch's remainder goes through the one-row statement. */
const ROWS_PER_INSERT = 16;
const FIELDS = 16;

type Db = Database.Database;
type Statement = Database.Statement<unknown[]>;

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
  readonly #deleteOlder: Statement;
  /** Rows in the table: counted once at open, then kept by our own inserts and deletes. */
  #rows: number;
  readonly #deleteOldest: Statement;
  readonly #queries = new Map<number, Statement>();
  #queue: RequestRecord[] = [];
  #dropped = 0;
  #written = 0;
  #flushTimer: NodeJS.Timeout | null = null;
  #retentionTimer: NodeJS.Timeout | null = null;
  #flushSoon: NodeJS.Immediate | null = null;
  /** Set while flushes fail, so a broken disk logs once, not every 200ms. */
  #failing = false;
  #closed = false;

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
    this.#deleteOlder = db.prepare('DELETE FROM requests WHERE ts < ?');
    // count(*) walks a whole index (tens of ms at a million rows): pay it once, here, not on
    // every retention pass. This process is the file's only writer (see open()).
    this.#rows = (db.prepare('SELECT count(*) AS n FROM requests').get() as { n: number }).n;
    // Oldest by insertion order: the rowid is the cheapest order to walk from the start.
    this.#deleteOldest = db.prepare('DELETE FROM requests WHERE seq IN (SELECT seq FROM requests ORDER BY seq LIMIT ?)');
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
      try {
        this.applyRetention();
      } catch (err) {
        this.#log.error({ err }, 'request log retention failed');
      }
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
    this.#rows += rows.length;
    this.#queue = [];
  }

  #compile(filter: RequestFilter): { shape: number; params: Array<string | number> } {
    if (!Number.isInteger(filter.limit) || filter.limit < 1) throw new RangeError('limit must be a positive integer');
    let shape = 0;
    const params: Array<string | number> = [];
    const status = filter.status;
    if (typeof status === 'number') {
      if (!Number.isInteger(status)) throw new RangeError('status must be an integer');
      shape |= F_STATUS | (status >= 400 ? F_ERRORS : 0);
      params.push(status);
    } else if (status !== undefined) {
      if (!Number.isInteger(status.class) || status.class < 1 || status.class > 5) throw new RangeError('status class must be 1 to 5');
      shape |= F_CLASS | (status.class >= 4 ? F_ERRORS : 0);
      params.push(status.class * 100, status.class * 100 + 100);
    }
    if (filter.since !== undefined) {
      shape |= F_SINCE;
      params.push(filter.since);
    }
    if (filter.upstream !== undefined) {
      shape |= F_UPSTREAM;
      params.push(filter.upstream);
    }
    if (filter.listener !== undefined) {
      shape |= F_LISTENER;
      params.push(filter.listener);
    }
    if (filter.clientSubject !== undefined) {
      shape |= F_SUBJECT;
      params.push(filter.clientSubject);
    }
    params.push(Math.min(filter.limit, MAX_QUERY_LIMIT));
    return { shape, params };
  }

  /** Newest first (by start time). `limit` is capped at 10000. */
  query(filter: RequestFilter): RequestRow[] {
    const { shape, params } = this.#compile(filter);
    return this.#queryFor(shape).all(...params) as RequestRow[];
  }

  /** SQLite's plan for a query (EXPLAIN QUERY PLAN details): which index serves which filter. */
  queryPlan(filter: RequestFilter): string[] {
    const { shape, params } = this.#compile(filter);
    const sql = this.#queryFor(shape).source;
    return (this.#db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...params) as Array<{ detail: string }>).map((r) => r.detail);
  }

  #queryFor(shape: number): Statement {
    let stmt = this.#queries.get(shape);
    if (stmt === undefined) {
      const where = FRAGMENTS.filter(([bit]) => (shape & bit) !== 0).map(([, sql]) => sql);
      const sql = `SELECT ${COLUMNS} FROM requests${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ts DESC, seq DESC LIMIT ?`;
      stmt = this.#db.prepare(sql);
      this.#queries.set(shape, stmt);
    }
    return stmt;
  }

  /** Deletes rows older than the retention, then the oldest beyond max_rows. */
  applyRetention(now: number = Date.now()): { deleted: number } {
    let deleted = this.#deleteOlder.run(now - this.#cfg.retentionMs).changes;
    this.#rows -= deleted;
    if (this.#rows > this.#cfg.maxRows) {
      const trimmed = this.#deleteOldest.run(this.#rows - this.#cfg.maxRows).changes;
      this.#rows -= trimmed;
      deleted += trimmed;
    }
    return { deleted };
  }

  get stats(): RequestLogStats {
    return { queued: this.#queue.length, dropped: this.#dropped, written: this.#written };
  }

  /** Stops the timers, writes what is queued, closes the database. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#flushTimer !== null) clearInterval(this.#flushTimer);
    if (this.#retentionTimer !== null) clearInterval(this.#retentionTimer);
    if (this.#flushSoon !== null) clearImmediate(this.#flushSoon);
    this.#flushTimer = this.#retentionTimer = this.#flushSoon = null;
    this.flush();
    this.#dropped += this.#queue.length;
    this.#queue = [];
    this.#db.close();
  }
}

/** A row for the JSON API: `ts` as an ISO 8601 string. */
export function requestRowToJson(row: RequestRow): Record<string, unknown> {
  return { ...row, ts: new Date(row.ts).toISOString() };
}
