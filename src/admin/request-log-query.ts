// The request log's query language: the API's filters as SQL over the `requests` view. Used by
// the reader thread (request-log-worker.ts), which answers the queries, and shared so the writer
// and the reader agree on the columns.

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

/**
 * request_log_state's key for the first context key the writer may still refer to: the
 * reader's sweep deletes only unused contexts below it (request-log.ts writes it).
 */
export const CONTEXTS_IN_USE_FROM = 'contexts_in_use_from';

/** Unused contexts are swept (after retention deleted rows) once the file holds more than this many. */
export const SWEEP_CONTEXTS_OVER = 4096;

export const COLUMNS = 'id, ts, listener, client_addr, client_subject, client_sha256, method, host, path, status, upstream, endpoint, bytes_in, bytes_out, duration_ms, error';
export const MAX_QUERY_LIMIT = 10_000;

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

export interface CompiledQuery {
  /** Which filters are present: one SQL text (and one prepared statement) per shape. */
  shape: number;
  sql: string;
  params: Array<string | number>;
}

/** The filter as SQL with bound parameters; throws RangeError on a value no query can have. */
export function compileQuery(filter: RequestFilter): CompiledQuery {
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
  const where = FRAGMENTS.filter(([bit]) => (shape & bit) !== 0).map(([, sql]) => sql);
  const sql = `SELECT ${COLUMNS} FROM requests${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ts DESC, seq DESC LIMIT ?`;
  return { shape, sql, params };
}
