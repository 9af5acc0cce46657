// The request log's reader thread. It answers the admin API's queries and applies retention on
// its own connection to the file, so the slow operations never run on the proxy's event loop:
// measured on a million rows, a filter on a rare client subject scans for ~180 ms, and deleting
// 200k expired rows took ~230 ms in one statement. The proxy's thread only inserts, in batches.
// WAL lets this reader run beside the writer; retention deletes in chunks of a few thousand rows,
// each its own short transaction, so the writer's flush never waits long for the lock. It also
// checkpoints the WAL every second, which SQLite would otherwise do inside the writer's commits.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { CONTEXTS_IN_USE_FROM, SWEEP_CONTEXTS_OVER, compileQuery, type RequestFilter } from './request-log-query.ts';

export interface ReaderInit {
  path: string;
}

export type ReaderRequest =
  | { id: number; op: 'query'; filter: RequestFilter }
  | { id: number; op: 'plan'; filter: RequestFilter }
  | { id: number; op: 'retention'; cutoff: number; maxRows: number };

export type ReaderReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { name: string; message: string; code?: string } };

/** Rows per DELETE: ~6 ms of holding the write lock each (measured), well under the writer's 20 ms busy timeout. */
export const RETENTION_CHUNK = 5000;
/** How often the reader checkpoints the WAL into the database file. */
const CHECKPOINT_INTERVAL_MS = 1000;
// Off the proxy's thread, waiting out the writer's flush is fine.
const BUSY_TIMEOUT_MS = 2000;

type Statement = Database.Statement<unknown[]>;

function run(init: ReaderInit): void {
  const port = parentPort;
  if (port === null) throw new Error('request-log-worker.ts runs as a worker thread');
  const db = new Database(init.path, { timeout: BUSY_TIMEOUT_MS, fileMustExist: true });
  const byShape = new Map<number, Statement>();
  const deleteOlder = db.prepare('DELETE FROM request_rows WHERE seq IN (SELECT seq FROM request_rows WHERE ts < ? ORDER BY ts LIMIT ?)');
  // max_rows: the oldest by seq, as a rowid range (measured on 1.2M rows, CPU per row deleted
  // with the checkpoint: 0.75-0.81 µs, against 0.97-1.10 for "seq IN (SELECT ... LIMIT n)")
  const nthOldest = db.prepare('SELECT seq FROM request_rows ORDER BY seq LIMIT 1 OFFSET ?').pluck();
  const deleteThrough = db.prepare('DELETE FROM request_rows WHERE seq <= ?');
  const count = db.prepare('SELECT count(*) FROM request_rows').pluck();
  const contexts = db.prepare('SELECT count(*) FROM request_contexts').pluck();
  // One scan of request_rows (an ephemeral index of the keys in use), only when the contexts
  // have grown: the rows of most deployments share a few hundred.
  const sweepContexts = db.prepare(`DELETE FROM request_contexts WHERE k < (SELECT value FROM request_log_state WHERE key = '${CONTEXTS_IN_USE_FROM}') AND k NOT IN (SELECT ctx FROM request_rows)`);

  const statementFor = (filter: RequestFilter): { stmt: Statement; params: Array<string | number> } => {
    const q = compileQuery(filter);
    let stmt = byShape.get(q.shape);
    if (stmt === undefined) {
      stmt = db.prepare(q.sql);
      byShape.set(q.shape, stmt);
    }
    return { stmt, params: q.params };
  };

  const retention = (cutoff: number, maxRows: number): { deleted: number; contextsDeleted: number } => {
    let deleted = 0;
    for (;;) {
      const n = deleteOlder.run(cutoff, RETENTION_CHUNK).changes;
      deleted += n;
      if (n < RETENTION_CHUNK) break;
    }
    let excess = (count.get() as number) - maxRows;
    while (excess > 0) {
      const through = nthOldest.get(Math.min(excess, RETENTION_CHUNK) - 1) as number | undefined;
      if (through === undefined) break;
      const n = deleteThrough.run(through).changes;
      if (n === 0) break;
      deleted += n;
      excess -= n;
    }
    const contextsDeleted = deleted > 0 && (contexts.get() as number) > SWEEP_CONTEXTS_OVER ? sweepContexts.run().changes : 0;
    return { deleted, contextsDeleted };
  };

  port.on('message', (m: ReaderRequest) => {
    let reply: ReaderReply;
    try {
      let result: unknown;
      if (m.op === 'query') {
        const { stmt, params } = statementFor(m.filter);
        result = stmt.all(...params);
      } else if (m.op === 'plan') {
        const { stmt, params } = statementFor(m.filter);
        result = (db.prepare(`EXPLAIN QUERY PLAN ${stmt.source}`).all(...params) as Array<{ detail: string }>).map((r) => r.detail);
      } else {
        result = retention(m.cutoff, m.maxRows);
      }
      reply = { id: m.id, ok: true, result };
    } catch (err) {
      const e = err as Error & { code?: unknown };
      reply = { id: m.id, ok: false, error: { name: e.name, message: e.message, ...(typeof e.code === 'string' ? { code: e.code } : {}) } };
    }
    port.postMessage(reply);
  });
  // The writer runs with wal_autocheckpoint = 0: the checkpoints are ours. PASSIVE never waits
  // for the writer; what it cannot copy now is copied on the next tick.
  const checkpoint = setInterval(() => {
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // busy or a transient I/O error: the next tick tries again
    }
  }, CHECKPOINT_INTERVAL_MS);
  port.on('close', () => {
    clearInterval(checkpoint);
    db.close();
  });
}

run(workerData as ReaderInit);
