// The SQLite request log: batched writes that survive a restart, the API's filters, a bounded
// queue that drops instead of blocking, retention by age and max_rows, clear startup errors for
// a locked or unusable file, and the row of a real proxied request carrying its X-Request-Id.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { RequestLog, requestRowToJson } from '../src/admin/request-log.ts';
import { COLUMNS, SWEEP_CONTEXTS_OVER } from '../src/admin/request-log-query.ts';
import { CONTEXT_LIMIT, MAX_TEXT_BYTES, RowQueue } from '../src/admin/row-queue.ts';
import type { ProxyEvents } from '../src/admin/types.ts';
import type { RequestLogConfig } from '../src/config/types.ts';
import { ConfigError } from '../src/errors.ts';
import type { RequestRecord } from '../src/http/context.ts';
import { createLogger, silentLogger } from '../src/log.ts';
import { makeTestPki } from './support/pki.ts';
import { clientAgent, request, startProxy } from './support/proxy.ts';
import { startUpstream } from './support/upstream.ts';

const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), 'mtls-request-log-'));
let files = 0;
test.after(() => rmSync(dir, { recursive: true, force: true }));

function config(overrides: Partial<RequestLogConfig> = {}): RequestLogConfig {
  return { path: join(dir, `db-${files++}`, 'requests.sqlite'), retentionMs: 7 * DAY, maxRows: 1_000_000, ...overrides };
}

/** Stands in for the proxy: only onRequest matters to the log. */
class FakeEvents implements ProxyEvents {
  readonly #fns: Array<(r: RequestRecord) => void> = [];
  onRequest(fn: (r: RequestRecord) => void): void {
    this.#fns.push(fn);
  }
  onTlsError(): void {}
  onClientCertificate(): void {}
  onUpstreamConnect(): void {}
  onTunnelEnd(): void {}
  emit(r: RequestRecord): void {
    for (const fn of this.#fns) fn(r);
  }
}

let ids = 0;
/** The row counters of RequestLog.stats (its write time varies). */
function counts(s: RequestLog['stats']): { queued: number; dropped: number; written: number } {
  return { queued: s.queued, dropped: s.dropped, written: s.written };
}

function record(overrides: Partial<RequestRecord> = {}): RequestRecord {
  return {
    id: `req-${ids++}`, ts: Date.now(), listener: 'edge', clientAddr: '127.0.0.1:50000', clientSubject: 'CN=orders', clientSha256: 'ab'.repeat(32),
    method: 'GET', host: 'localhost', path: '/x', status: 200, upstream: 'backend', endpoint: '127.0.0.1:9000',
    bytesIn: 100, bytesOut: 200, durationMs: 1.5, error: null, ...overrides,
  };
}

test('rows are written in batches, on size and on the timer, and survive close and reopen', async () => {
  const cfg = config();
  const events = new FakeEvents();
  const log = RequestLog.open(cfg, silentLogger, { batchSize: 4, flushIntervalMs: 60_000 });
  log.attach(events);
  log.start();
  for (let i = 0; i < 3; i++) events.emit(record());
  await nextTurn();
  assert.deepEqual(counts(log.stats), { queued: 3, dropped: 0, written: 0 }, 'below the batch size nothing is written yet');
  events.emit(record());
  await nextTurn();
  assert.deepEqual(counts(log.stats), { queued: 0, dropped: 0, written: 4 }, 'a full batch is written on the next turn');
  assert.equal((await log.query({ limit: 100 })).length, 4);
  events.emit(record({ id: 'last' }));
  await log.close();
  await log.close(); // idempotent

  const timed = RequestLog.open(cfg, silentLogger, { batchSize: 1000, flushIntervalMs: 10 });
  timed.attach(events);
  timed.start();
  events.emit(record({ id: 'after-restart' }));
  await sleep(50);
  assert.equal(timed.stats.written, 1, 'the timer flushes a partial batch');
  const rows = await timed.query({ limit: 100 });
  assert.equal(rows.length, 6, 'rows from before the restart are still there');
  assert.ok(rows.some((r) => r.id === 'last'), 'close() wrote what was queued');
  await timed.close();
});

test('query: newest first, limit, and every filter', async () => {
  const log = RequestLog.open(config(), silentLogger);
  const events = new FakeEvents();
  log.attach(events);
  const t0 = 1_700_000_000_000;
  const rows: Array<Partial<RequestRecord>> = [
    { id: 'a', ts: t0 + 1, status: 200, upstream: 'backend', listener: 'edge', clientSubject: 'CN=orders' },
    { id: 'b', ts: t0 + 2, status: 404, upstream: 'backend', listener: 'edge', clientSubject: 'CN=billing' },
    { id: 'c', ts: t0 + 3, status: 502, upstream: 'api', listener: 'edge', clientSubject: 'CN=orders' },
    { id: 'd', ts: t0 + 4, status: 503, upstream: null, listener: 'internal', clientSubject: null, error: 'MTLS_ERR_NO_HEALTHY_ENDPOINT' },
    { id: 'e', ts: t0 + 5, status: 200, upstream: 'api', listener: 'internal', clientSubject: 'CN=billing' },
  ];
  // Written out of start order, as requests finish: the order is by ts, not by insertion.
  for (const r of [rows[1], rows[0], rows[4], rows[2], rows[3]]) events.emit(record(r));
  log.flush();
  const ids = async (f: Parameters<RequestLog['query']>[0]): Promise<string[]> => (await log.query(f)).map((r) => r.id);

  assert.deepEqual(await ids({ limit: 10 }), ['e', 'd', 'c', 'b', 'a']);
  assert.deepEqual(await ids({ limit: 2 }), ['e', 'd']);
  assert.deepEqual(await ids({ limit: 10, status: 200 }), ['e', 'a']);
  assert.deepEqual(await ids({ limit: 10, status: { class: 5 } }), ['d', 'c']);
  assert.deepEqual(await ids({ limit: 10, status: { class: 4 } }), ['b']);
  assert.deepEqual(await ids({ limit: 10, since: t0 + 3 }), ['e', 'd', 'c']);
  assert.deepEqual(await ids({ limit: 10, upstream: 'api' }), ['e', 'c']);
  assert.deepEqual(await ids({ limit: 10, listener: 'internal' }), ['e', 'd']);
  assert.deepEqual(await ids({ limit: 10, clientSubject: 'CN=orders' }), ['c', 'a']);
  assert.deepEqual(await ids({ limit: 10, clientSubject: 'CN=billing', status: 200, since: t0 }), ['e']);
  assert.deepEqual(await ids({ limit: 10, upstream: "x' OR '1'='1" }), [], 'values are bound, never spliced into SQL');

  const d = (await log.query({ limit: 1, listener: 'internal', status: 503 }))[0]!;
  assert.deepEqual(d, {
    id: 'd', ts: t0 + 4, listener: 'internal', client_addr: '127.0.0.1:50000', client_subject: null, client_sha256: 'ab'.repeat(32),
    method: 'GET', host: 'localhost', path: '/x', status: 503, upstream: null, endpoint: '127.0.0.1:9000',
    bytes_in: 100, bytes_out: 200, duration_ms: 1.5, error: 'MTLS_ERR_NO_HEALTHY_ENDPOINT',
  });
  assert.equal(requestRowToJson(d).ts, new Date(t0 + 4).toISOString());
  await assert.rejects(log.query({ limit: 0 }), RangeError);
  await assert.rejects(log.query({ limit: 5, status: { class: 9 } }), RangeError);
  await log.close();
});

test('batches of any size are written whole, field for field (16-row INSERTs plus a remainder)', async () => {
  const log = RequestLog.open(config(), silentLogger);
  const events = new FakeEvents();
  log.attach(events);
  let n = 0;
  for (const size of [1, 15, 16, 17, 33, 50]) {
    for (let i = 0; i < size; i++, n++) {
      events.emit(record({ id: `row-${n}`, ts: 1_700_000_000_000 + n, status: 200 + (n % 300), bytesIn: n, bytesOut: 2 * n, durationMs: n / 8,
        clientSubject: n % 2 === 0 ? `CN=c${n}` : null, upstream: n % 3 === 0 ? null : `u${n}`, error: n % 5 === 0 ? `E${n}` : null }));
    }
    log.flush();
  }
  const rows = await log.query({ limit: 1000 });
  assert.equal(rows.length, n);
  for (const r of rows) {
    const k = Number(r.id.slice(4));
    assert.deepEqual([r.ts, r.status, r.bytes_in, r.bytes_out, r.duration_ms, r.client_subject, r.upstream, r.error],
      [1_700_000_000_000 + k, 200 + (k % 300), k, 2 * k, k / 8, k % 2 === 0 ? `CN=c${k}` : null, k % 3 === 0 ? null : `u${k}`, k % 5 === 0 ? `E${k}` : null], r.id);
  }
  await log.close();
});

test('any records round-trip field for field: non-ASCII and long paths, nulls, every batch size (property)', async () => {
  // The queue keeps rows outside the JS heap (row-queue.ts): id and path as UTF-8 bytes, the
  // numbers in a Float64Array, the other columns as a context (dictionary indexes and the
  // status) that a TEMP table joins back in. Paths come from the parser as latin1 strings, so
  // every char 0-255 must survive; wider chars too, should a record ever carry one. Few
  // listeners, methods and statuses, so contexts repeat, as they do in traffic.
  const text = (max: number) => fc.string({ unit: fc.oneof(fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)), fc.constantFrom('/', '\u20ac', '\u{1F600}')), maxLength: max });
  const nullable = (t: fc.Arbitrary<string>) => fc.option(t, { nil: null });
  const rec = fc.record({
    path: fc.oneof(text(40), text(40).map((p) => p + 'x'.repeat(70_000))),
    listener: fc.constantFrom('edge', 'inner'), clientAddr: fc.constantFrom('10.0.0.1', '::1'), clientSubject: nullable(text(20)), clientSha256: nullable(fc.constantFrom('ab'.repeat(32), 'cd'.repeat(32))),
    method: fc.constantFrom('GET', 'POST', 'PROPFIND'), host: text(20), status: fc.integer({ min: 100, max: 599 }), upstream: nullable(fc.constantFrom('app', 'api')),
    endpoint: nullable(text(10)), bytesIn: fc.nat(), bytesOut: fc.maxSafeNat(), durationMs: fc.double({ min: 0, max: 1e6, noNaN: true }), error: nullable(fc.constantFrom('MTLS_ERR_UPSTREAM_TIMEOUT', 'MTLS_ERR_X')),
  });
  await fc.assert(fc.asyncProperty(fc.array(rec, { minLength: 1, maxLength: 60 }), fc.integer({ min: 1, max: 40 }), async (recs, batch) => {
    const log = RequestLog.open(config({ path: join(dir, `prop-${process.hrtime.bigint()}.sqlite`) }), silentLogger, { flushIntervalMs: 60_000 });
    const events = new FakeEvents();
    log.attach(events);
    const sent = recs.map((r, i) => ({ ...r, id: `p-${i}`, ts: 1_700_000_000_000 + i }));
    sent.forEach((r, i) => {
      events.emit(r);
      if ((i + 1) % batch === 0) log.flush();
    });
    log.flush();
    const rows = await log.query({ limit: 1000 });
    await log.close();
    assert.equal(rows.length, sent.length);
    for (const row of rows) {
      const r = sent[Number(row.id.slice(2))]!;
      assert.deepEqual(row, { id: r.id, ts: r.ts, listener: r.listener, client_addr: r.clientAddr, client_subject: r.clientSubject, client_sha256: r.clientSha256, method: r.method, host: r.host,
        path: r.path, status: r.status, upstream: r.upstream, endpoint: r.endpoint, bytes_in: r.bytesIn, bytes_out: r.bytesOut, duration_ms: r.durationMs, error: r.error });
    }
  }), { numRuns: 40 });
});

test('rows go in in the order they came, whatever their context', async () => {
  const log = RequestLog.open(config(), silentLogger);
  const events = new FakeEvents();
  log.attach(events);
  // one start time for all: "newest first" then falls back on the insertion order
  for (let i = 0; i < 40; i++) events.emit(record({ id: `o-${i}`, ts: 1_700_000_000_000, status: [200, 404, 502][i % 3]!, host: `h${i % 5}` }));
  log.flush();
  const rows = await log.query({ limit: 100 });
  assert.deepEqual(rows.map((r) => r.id), Array.from({ length: 40 }, (_, i) => `o-${39 - i}`));
  await log.close();
});

test('past CONTEXT_LIMIT distinct contexts the dictionary starts over, and every row keeps its values', async () => {
  const log = RequestLog.open(config(), silentLogger, { flushIntervalMs: 60_000, batchSize: 100_000 });
  const events = new FakeEvents();
  log.attach(events);
  const total = CONTEXT_LIMIT + 500;
  for (let round = 0; round < 3; round++) {
    // each row its own host: a new context every row, and a new string
    for (let i = 0; i < total; i++) events.emit(record({ id: `g${round}-${i}`, ts: 1_700_000_000_000 + round * total + i, host: `host-${round}-${i}` }));
    log.flush();
  }
  assert.deepEqual(counts(log.stats), { queued: 0, dropped: 0, written: 3 * total });
  const rows = await log.query({ limit: 10_000 });
  assert.equal(rows.length, 10_000);
  for (const r of rows) assert.equal(r.host, `host-${r.id.slice(1)}`, r.id);
  await log.close();
});

test('the queue is bounded in rows and in text bytes; a cleared queue takes rows again', () => {
  const q = new RowQueue(3);
  assert.ok(q.push(record()) && q.push(record()) && q.push(record()));
  assert.equal(q.push(record()), false, 'row limit');
  q.clear();
  const long = record({ path: '/' + 'a'.repeat(MAX_TEXT_BYTES / 8) });
  const big = new RowQueue(100);
  let n = 0;
  while (big.push(long)) n++;
  assert.ok(n >= 2 && n < 8, `text limit after ${n} rows of ${long.path.length} bytes`);
  assert.equal(big.length, n);
  big.clear();
  assert.ok(big.push(long), 'room again after clear');
});

test('query plans: newest first from an index, never a sort; error filters use the partial index', async () => {
  const log = RequestLog.open(config(), silentLogger);
  const plan = async (f: Parameters<RequestLog['query']>[0]): Promise<string> => (await log.queryPlan(f)).join(' | ');
  for (const f of [{ limit: 5 }, { limit: 5, since: 1 }, { limit: 5, status: 200 }, { limit: 5, status: { class: 2 } }, { limit: 5, upstream: 'u' },
    { limit: 5, clientSubject: 'CN=x', listener: 'edge' }, { limit: 5, status: 503 }, { limit: 5, status: { class: 4 } }, { limit: 5, status: { class: 5 }, since: 1 }]) {
    const p = await plan(f);
    assert.doesNotMatch(p, /TEMP B-TREE/, `no sort for ${JSON.stringify(f)}: ${p}`);
  }
  assert.match(await plan({ limit: 5 }), /request_rows_ts\b/);
  assert.match(await plan({ limit: 5, status: { class: 5 } }), /request_rows_errors_ts/);
  assert.match(await plan({ limit: 5, status: { class: 4 } }), /request_rows_errors_ts/);
  assert.match(await plan({ limit: 5, status: 503 }), /request_rows_errors_ts/);
  assert.match(await plan({ limit: 5, status: 200 }), /request_rows_ts\b/);
  await log.close();
});

test('a full queue drops and counts rows without blocking the caller', async () => {
  const log = RequestLog.open(config(), silentLogger, { queueLimit: 100 });
  const events = new FakeEvents();
  log.attach(events);
  const r = record();
  const t0 = performance.now();
  for (let i = 0; i < 100_000; i++) events.emit(r);
  const elapsed = performance.now() - t0;
  assert.deepEqual(counts(log.stats), { queued: 100, dropped: 99_900, written: 0 });
  assert.ok(elapsed < 500, `enqueueing took ${elapsed.toFixed(1)}ms`);
  log.flush();
  assert.deepEqual(counts(log.stats), { queued: 0, dropped: 99_900, written: 100 });
  await log.close();
});

test('retention deletes rows older than the retention, then the oldest beyond max_rows', async () => {
  const now = Date.now();
  const cfg = config({ retentionMs: 7 * DAY, maxRows: 10 });
  const log = RequestLog.open(cfg, silentLogger);
  const events = new FakeEvents();
  log.attach(events);
  for (let i = 0; i < 5; i++) events.emit(record({ id: `old-${i}`, ts: now - 8 * DAY + i }));
  for (let i = 0; i < 15; i++) events.emit(record({ id: `new-${i}`, ts: now - 1000 + i }));
  log.flush();
  assert.deepEqual(await log.applyRetention(now), { deleted: 10, contextsDeleted: 0 });
  const left = (await log.query({ limit: 100 })).map((r) => r.id);
  assert.deepEqual(left, Array.from({ length: 10 }, (_, i) => `new-${14 - i}`));
  assert.deepEqual(await log.applyRetention(now), { deleted: 0, contextsDeleted: 0 });
  await log.close();

  // a restart with a smaller max_rows trims the rows it found on disk
  const smaller = RequestLog.open({ ...cfg, maxRows: 4 }, silentLogger);
  assert.deepEqual(await smaller.applyRetention(now), { deleted: 6, contextsDeleted: 0 });
  assert.deepEqual((await smaller.query({ limit: 100 })).map((r) => r.id), ['new-14', 'new-13', 'new-12', 'new-11']);
  await smaller.close();

  // and on its own timer
  const timed = RequestLog.open(config({ retentionMs: 1000, maxRows: 100 }), silentLogger, { retentionIntervalMs: 10 });
  timed.attach(events);
  events.emit(record({ id: 'stale', ts: now - 60_000 }));
  events.emit(record({ id: 'fresh' }));
  timed.flush();
  timed.start();
  await sleep(60);
  assert.deepEqual((await timed.query({ limit: 10 })).map((r) => r.id), ['fresh']);
  await timed.close();
});

test('max_rows trims over several chunks, exactly down to the newest max_rows rows', async () => {
  const log = RequestLog.open(config({ maxRows: 100 }), silentLogger, { queueLimit: 20_000, flushIntervalMs: 60_000, batchSize: 100_000 });
  const events = new FakeEvents();
  log.attach(events);
  const total = 12_345;
  for (let i = 0; i < total; i++) events.emit(record({ id: `m-${i}`, ts: Date.now() - total + i }));
  log.flush();
  assert.deepEqual(await log.applyRetention(), { deleted: total - 100, contextsDeleted: 0 });
  const left = (await log.query({ limit: 1000 })).map((r) => r.id);
  assert.deepEqual(left, Array.from({ length: 100 }, (_, i) => `m-${total - 1 - i}`));
  await log.close();
});

test('contexts no row uses are swept once past SWEEP_CONTEXTS_OVER; those the writer may still use stay', async () => {
  const now = Date.now();
  const cfg = config({ retentionMs: 7 * DAY });
  const log = RequestLog.open(cfg, silentLogger, { flushIntervalMs: 60_000, batchSize: 100_000 });
  const events = new FakeEvents();
  log.attach(events);
  const old = SWEEP_CONTEXTS_OVER + 100;
  // one context per row, all of them expired; the queue starts its contexts over after this flush
  for (let i = 0; i < old; i++) events.emit(record({ id: `old-${i}`, ts: now - 8 * DAY, clientAddr: `10.0.${i >> 8}.${i & 255}` }));
  log.flush();
  // a context of the new range: its only row expires too, but the writer may write it again
  events.emit(record({ id: 'keep-1', ts: now - 8 * DAY, clientAddr: '192.0.2.1' }));
  events.emit(record({ id: 'live', clientAddr: '192.0.2.2' }));
  log.flush();
  assert.deepEqual(await log.applyRetention(now), { deleted: old + 1, contextsDeleted: old });
  // the kept context again, written by key only: the row must still read whole
  events.emit(record({ id: 'keep-2', clientAddr: '192.0.2.1' }));
  log.flush();
  assert.deepEqual((await log.query({ limit: 10 })).map((r) => [r.id, r.client_addr]), [['keep-2', '192.0.2.1'], ['live', '192.0.2.2']]);
  await log.close();
  const db = new Database(cfg.path, { readonly: true });
  assert.equal(db.prepare('SELECT count(*) FROM request_contexts').pluck().get(), 2);
  db.close();
});

test('a file of schema 1 (a requests table) is migrated on open: every row reads the same, new rows follow', async () => {
  const cfg = config();
  mkdirSync(join(cfg.path, '..'), { recursive: true });
  const v1 = new Database(cfg.path);
  v1.exec(`CREATE TABLE requests (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, ts INTEGER NOT NULL, listener TEXT NOT NULL, client_addr TEXT NOT NULL,
    client_subject TEXT, client_sha256 TEXT, method TEXT NOT NULL, host TEXT NOT NULL, path TEXT NOT NULL, status INTEGER NOT NULL, upstream TEXT,
    endpoint TEXT, bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL, duration_ms REAL NOT NULL, error TEXT);
    CREATE INDEX requests_ts ON requests (ts); CREATE INDEX requests_errors_ts ON requests (ts) WHERE status >= 400;`);
  const before: RequestRecord[] = [];
  for (let i = 0; i < 50; i++) {
    before.push(record({ id: `v1-${i}`, ts: 1_700_000_000_000 + i, clientSubject: i % 3 === 0 ? null : 'CN=orders', clientSha256: i % 3 === 0 ? null : 'ab'.repeat(32),
      upstream: i % 5 === 0 ? null : 'backend', endpoint: i % 5 === 0 ? null : '127.0.0.1:9000', status: i % 5 === 0 ? 502 : 200, error: i % 5 === 0 ? 'no upstream' : null, host: `h${i % 4}` }));
  }
  const ins = v1.prepare(`INSERT INTO requests (id, ts, listener, client_addr, client_subject, client_sha256, method, host, path, status, upstream, endpoint, bytes_in, bytes_out, duration_ms, error)
    VALUES (@id, @ts, @listener, @clientAddr, @clientSubject, @clientSha256, @method, @host, @path, @status, @upstream, @endpoint, @bytesIn, @bytesOut, @durationMs, @error)`);
  for (const r of before) ins.run(r);
  v1.close();

  const log = RequestLog.open(cfg, silentLogger);
  const rows = await log.query({ limit: 100 });
  assert.deepEqual(rows.map((r) => r.id), before.map((r) => r.id).reverse());
  for (const r of rows) {
    const want = before.find((b) => b.id === r.id)!;
    assert.deepEqual(r, { id: want.id, ts: want.ts, listener: want.listener, client_addr: want.clientAddr, client_subject: want.clientSubject, client_sha256: want.clientSha256,
      method: want.method, host: want.host, path: want.path, status: want.status, upstream: want.upstream, endpoint: want.endpoint, bytes_in: want.bytesIn,
      bytes_out: want.bytesOut, duration_ms: want.durationMs, error: want.error });
  }
  const events = new FakeEvents();
  log.attach(events);
  events.emit(record({ id: 'v2-0', ts: 1_800_000_000_000, host: 'h0' }));
  log.flush();
  assert.deepEqual((await log.query({ limit: 2 })).map((r) => [r.id, r.host]), [['v2-0', 'h0'], ['v1-49', 'h1']]);
  assert.deepEqual((await log.query({ limit: 100, status: 502 })).length, 10);
  await log.close();

  const db = new Database(cfg.path, { readonly: true });
  assert.equal(db.pragma('user_version', { simple: true }), 2);
  assert.equal(db.prepare("SELECT type FROM sqlite_schema WHERE name = 'requests'").pluck().get(), 'view');
  // the contract's columns, in its order, after seq
  assert.deepEqual(db.prepare("SELECT name FROM pragma_table_info('requests')").pluck().all(), ['seq', ...COLUMNS.split(', ')]);
  // the old table's contexts each once, plus the new row's (a new range of keys: written again)
  const distinct = new Set(before.map((r) => JSON.stringify([r.host, r.clientSubject, r.clientSha256, r.upstream, r.endpoint, r.error]))).size;
  assert.equal(db.prepare('SELECT count(*) FROM request_contexts').pluck().get(), distinct + 1);
  db.close();
});

test('queries and retention run on the reader thread: the event loop keeps turning meanwhile', async () => {
  const log = RequestLog.open(config({ retentionMs: DAY, maxRows: 1_000_000 }), silentLogger, { queueLimit: 100_000 });
  const events = new FakeEvents();
  log.attach(events);
  const now = Date.now();
  for (let i = 0; i < 60_000; i++) events.emit(record({ id: `r${i}`, ts: now - 2 * DAY + i }));
  events.emit(record({ id: 'kept', ts: now }));
  log.flush();
  let turns = 0;
  let done = false;
  const spin = (): void => {
    turns++;
    if (!done) setImmediate(spin);
  };
  setImmediate(spin);
  const scan = log.query({ limit: 10, clientSubject: 'CN=nobody' }); // no match: a scan of every row
  const deleted = await log.applyRetention(now);
  assert.deepEqual(await scan, []);
  done = true;
  assert.deepEqual(deleted, { deleted: 60_000, contextsDeleted: 0 }, 'deleted in chunks of 5000, all of them');
  assert.ok(turns >= 10, `the proxy's thread ran ${turns} turns while the reader deleted 60000 rows`);
  assert.deepEqual((await log.query({ limit: 10 })).map((r) => r.id), ['kept']);
  await log.close();
  await assert.rejects(log.query({ limit: 1 }), /closed/, 'a closed log answers no queries');
});

test('the reader thread checkpoints the WAL into the database file; the writer never does', async () => {
  const cfg = config();
  const log = RequestLog.open(cfg, silentLogger, { queueLimit: 10_000 });
  const events = new FakeEvents();
  log.attach(events);
  const size = (): number => statSync(cfg.path).size;
  const before = size();
  for (let i = 0; i < 3000; i++) events.emit(record({ id: `w${i}` }));
  log.flush();
  assert.equal(size(), before, 'the flush wrote to the WAL only');
  const t0 = Date.now();
  while (size() === before && Date.now() - t0 < 5000) await sleep(50);
  assert.ok(size() > before + 100_000, `the checkpoint copied the pages into the file (${before} -> ${size()} bytes)`);
  await log.close();
});

test('a database locked by another connection is a ConfigError naming request_log.path', async () => {
  const cfg = config();
  RequestLog.open(cfg, silentLogger).close();
  const holder = new Database(cfg.path, { timeout: 0 });
  holder.exec('BEGIN EXCLUSIVE');
  try {
    assert.throws(() => RequestLog.open(cfg, silentLogger), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.path, 'request_log.path');
      assert.equal(err.code, 'MTLS_ERR_CONFIG');
      assert.match(err.message, /locked by another process/);
      assert.match(err.toString(), /^request_log\.path: /);
      return true;
    });
  } finally {
    holder.exec('ROLLBACK');
    await holder.close();
  }
  RequestLog.open(cfg, silentLogger).close(); // usable again once released
});

test('a flush that meets a lock keeps its rows queued, writes them later, and warns once, not errors', async () => {
  const cfg = config();
  const lines: Array<{ level: number; msg: string; queued?: number; rows?: number }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as (typeof lines)[number]);
      done();
    },
  });
  const log = RequestLog.open(cfg, createLogger({ level: 'info', format: 'json' }, sink));
  const events = new FakeEvents();
  log.attach(events);
  events.emit(record({ id: 'waits' }));
  const holder = new Database(cfg.path, { timeout: 0 });
  holder.exec('BEGIN EXCLUSIVE');
  log.flush();
  log.flush();
  assert.deepEqual(counts(log.stats), { queued: 1, dropped: 0, written: 0 });
  holder.exec('ROLLBACK');
  await holder.close();
  log.flush();
  assert.deepEqual(counts(log.stats), { queued: 0, dropped: 0, written: 1 });
  assert.equal((await log.query({ limit: 1 }))[0]?.id, 'waits');
  await log.close();
  // a lock held by another reader or a checkpoint passes: one warning (level 40), then the
  // recovery at the same level, so an operator logging at warn sees both
  const told = lines.filter((l) => l.msg.startsWith('request log'));
  assert.deepEqual(told.map((l) => [l.level, l.msg]), [
    [40, 'request log busy; rows stay queued and are written at the next flush'],
    [40, 'request log writes recovered'],
  ]);
  assert.equal(told[0]!.queued, 1);
  assert.equal(told[1]!.rows, 1);
});

test('a path that cannot be created or opened is a clear ConfigError', async () => {
  const base = join(dir, `bad-${files++}`);
  mkdirSync(base);
  const aFile = join(base, 'not-a-folder');
  writeFileSync(aFile, 'x');
  const notDb = join(base, 'garbage.sqlite');
  writeFileSync(notDb, 'this is not a database, but long enough to have a header'.repeat(10));
  const cases: Array<[string, RegExp]> = [
    [join(aFile, 'sub', 'requests.sqlite'), /cannot create the folder for request log/],
    [base, /cannot open request log/],
    [notDb, /cannot open request log .*not a database/],
  ];
  for (const [path, message] of cases) {
    assert.throws(() => RequestLog.open(config({ path }), silentLogger), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.path, 'request_log.path');
      assert.match(err.message, message);
      return true;
    });
  }
});

test('a read-only folder is a clear ConfigError', { skip: process.getuid?.() === 0 ? 'root ignores file modes' : false }, () => {
  const base = join(dir, `ro-${files++}`);
  mkdirSync(base, { mode: 0o500 });
  assert.throws(() => RequestLog.open(config({ path: join(base, 'requests.sqlite') }), silentLogger), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.path, 'request_log.path');
    return true;
  });
});

test('end to end: the row of a proxied request has the id its response carried in X-Request-Id', async (t) => {
  const pki = await makeTestPki();
  const up = await startUpstream(pki);
  const proxy = await startProxy(pki, up.port);
  const log = RequestLog.open(config(), silentLogger, { flushIntervalMs: 10 });
  log.attach(proxy.server);
  log.start();
  const agent = clientAgent(pki);
  t.after(async () => {
    agent.destroy();
    await log.close();
    await proxy.stop();
    await up.close();
    pki.cleanup();
  });
  const res = await request(proxy.port, agent, 'POST', '/orders?id=7', 'hello');
  assert.equal(res.status, 200);
  const id = res.headers['x-request-id'];
  assert.equal(typeof id, 'string');
  await sleep(40);
  const [row] = await log.query({ limit: 1, listener: 'edge' });
  assert.ok(row);
  assert.equal(row.id, id);
  assert.equal(row.status, 200);
  assert.equal(row.method, 'POST');
  assert.equal(row.path, '/orders', 'no query string in the log');
  assert.equal(row.upstream, 'backend');
  assert.equal(row.endpoint, `127.0.0.1:${up.port}`);
  assert.equal(row.client_subject, 'CN=test-client,O=Example');
  assert.match(row.client_sha256 ?? '', /^[0-9a-f]{64}$/);
  assert.ok(row.bytes_in > 0 && row.bytes_out > 0);
  assert.equal(row.error, null);
});
