// The primary of several workers (server.workers > 1). It owns what must exist once: the
// request log (SQLite has one writer; the workers' records arrive by IPC in batches), the admin
// listener (one address; /api and /metrics are answered from the workers over IPC and merged)
// and the signals (relayed to every worker). The workers serve the listeners.
//
// Phases as ProxyServer's: starting -> running -> draining -> stopped. Start order: request log
// -> admin -> workers (each: TLS -> pools -> health checks -> listeners); a worker that fails to
// start fails the start (exit 1). A worker that dies later is logged and replaced, with a
// back-off while they keep dying young; during draining none is replaced.
import cluster, { type Worker } from 'node:cluster';
import type { AddressInfo } from 'node:net';
import { installSignals } from '../signals.ts';
import { ClusterMetrics } from '../admin/cluster-metrics.ts';
import { RequestLog } from '../admin/request-log.ts';
import { AdminServer } from '../admin/server.ts';
import type { AdminView, CertificateView, ListenerView, Phase, Readiness, ReloadReport, UpstreamView, WorkerView } from '../admin/types.ts';
import type { Config } from '../config/types.ts';
import { ConfigError, ProxyError } from '../errors.ts';
import type { RequestRecord } from '../http/context.ts';
import { createLogger, type Logger } from '../log.ts';
import { formatAddress, VERSION } from '../server.ts';
import { mergeCertificates, mergeListeners, mergeReloads, mergeUpstreams } from './merge.ts';
import { isToPrimary, type Answers, type Question, type StartError, type ToPrimary, type ToWorker } from './protocol.ts';

/** An admin API question a worker has not answered in this long is answered without it. */
const ASK_TIMEOUT_MS = 2_000;
/** A reload reads and parses certificate files: give it longer. */
const RELOAD_TIMEOUT_MS = 10_000;
/** Past drain_timeout, workers get this long to send their last records and exit, then SIGKILL. */
const STOP_GRACE_MS = 5_000;
/** A worker that dies younger than this counts as a crash loop for the restart back-off. */
const STABLE_AFTER_MS = 10_000;
const RESTART_BACKOFF_MS = 500;
const RESTART_BACKOFF_MAX_MS = 30_000;

type SlotState = 'starting' | 'running' | 'stopping' | 'dead';

interface Slot {
  readonly worker: Worker;
  readonly pid: number;
  state: SlotState;
  readonly forkedAt: number;
  startError: StartError | null;
  /** Settles when the worker said 'started' (resolved) or exited before that (rejected). */
  readonly started: Promise<void>;
  /** Settles when the worker said 'stopped' (its records are all in) or exited. */
  readonly stopped: Promise<void>;
  readonly exited: Promise<void>;
}

interface Pending {
  readonly workerId: number;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  readonly timer: NodeJS.Timeout;
}

type Settled<T> = { slot: Slot; value: T; error?: undefined } | { slot: Slot; value?: undefined; error: string };

/** `server.workers` as a number of processes: "auto" is one per core. */
export function workerCount(workers: number | 'auto', cores: number): number {
  return workers === 'auto' ? Math.max(1, cores) : workers;
}

export class ClusterPrimary implements AdminView {
  readonly version = VERSION;
  readonly config: Config;
  readonly logger: Logger;
  readonly #count: number;
  readonly #startedAt = Date.now();
  #phase: Phase = 'starting';
  readonly #slots = new Map<number, Slot>();
  readonly #pending = new Map<number, Pending>();
  #nextAsk = 1;
  readonly #recordObservers: Array<(r: RequestRecord) => void> = [];
  #requestLog: RequestLog | null = null;
  #metrics: ClusterMetrics | null = null;
  #admin: AdminServer | null = null;
  #youngDeaths = 0;
  readonly #restartTimers = new Set<NodeJS.Timeout>();
  #statusRound: Promise<Array<Settled<Answers['status']>>> | null = null;
  #stopping: Promise<void> | null = null;

  constructor(config: Config, count: number, opts: { logger?: Logger } = {}) {
    this.config = config;
    this.#count = count;
    this.logger = opts.logger ?? createLogger(config.log);
  }

  get phase(): Phase {
    return this.#phase;
  }

  get startedAt(): number {
    return this.#startedAt;
  }

  /** The request log subscribes here; records come from the workers' batches. */
  onRequest(fn: (r: RequestRecord) => void): void {
    this.#recordObservers.push(fn);
  }

  async start(): Promise<void> {
    const cfg = this.config;
    try {
      if (cfg.requestLog !== null) {
        this.#requestLog = RequestLog.open(cfg.requestLog, this.logger);
        this.#requestLog.attach(this);
        this.#requestLog.start();
      }
      if (cfg.admin !== null) {
        const log = this.#requestLog;
        this.#metrics = new ClusterMetrics({ workerMetrics: () => this.#workerMetrics(), runningWorkers: () => this.#running().length }, log === null ? undefined : () => log.stats);
        this.#admin = new AdminServer({ config: cfg.admin, view: this, metrics: this.#metrics, requestLog: this.#requestLog, logger: this.logger });
        this.logger.info({ admin: formatAddress(await this.#admin.listen()) }, 'admin listening');
      }
      // 'advanced': structured clone, so Maps and Dates cross as they are (see protocol.ts).
      // exec and args default to this process's own: the worker runs `mtls-proxy start` too.
      cluster.setupPrimary({ serialization: 'advanced' });
      const slots: Slot[] = [];
      for (let i = 0; i < this.#count; i++) slots.push(this.#fork());
      const results = await Promise.allSettled(slots.map((s) => s.started));
      const failed = slots.find((s, i) => results[i]!.status === 'rejected');
      if (failed !== undefined) throw startFailure(failed);
    } catch (err) {
      await this.#teardown();
      throw err;
    }
    this.#phase = 'running';
    this.logger.info({ workers: this.#count, pids: [...this.#slots.values()].map((s) => s.pid) }, 'workers started');
  }

  #fork(): Slot {
    const worker = cluster.fork();
    let started!: { resolve: () => void; reject: (e: Error) => void };
    let markStopped!: () => void;
    let markExited!: () => void;
    const slot: Slot = {
      worker,
      pid: worker.process.pid ?? 0,
      state: 'starting',
      forkedAt: Date.now(),
      startError: null,
      started: new Promise<void>((resolve, reject) => { started = { resolve, reject }; }),
      stopped: new Promise<void>((resolve) => { markStopped = resolve; }),
      exited: new Promise<void>((resolve) => { markExited = resolve; }),
    };
    // A replacement's start failure is handled by 'exit' below; nobody awaits its promise.
    slot.started.catch(() => {});
    this.#slots.set(worker.id, slot);
    worker.on('message', (m: unknown) => {
      if (!isToPrimary(m)) return;
      this.#onMessage(slot, m, started, markStopped);
    });
    // Errors on the channel (EPIPE to a dying worker) are followed by 'exit'.
    worker.on('error', (err) => this.logger.debug({ err, worker: worker.id }, 'worker channel error'));
    worker.on('exit', (code, signal) => {
      const was = slot.state;
      slot.state = 'dead';
      this.#slots.delete(worker.id);
      started.reject(new Error(`worker ${worker.id} exited (${signal ?? code})`));
      markStopped();
      markExited();
      for (const [id, p] of this.#pending) {
        if (p.workerId !== worker.id) continue;
        clearTimeout(p.timer);
        this.#pending.delete(id);
        p.reject(new Error(`worker ${worker.id} exited`));
      }
      if (was === 'stopping' || this.#phase !== 'running') return;
      this.logger.error({ worker: worker.id, pid: slot.pid, code, signal, startError: slot.startError?.message }, 'worker died; replacing it');
      this.#metrics?.workerRestarted();
      this.#replace(slot);
    });
    return slot;
  }

  #onMessage(slot: Slot, m: ToPrimary, started: { resolve: () => void; reject: (e: Error) => void }, markStopped: () => void): void {
    switch (m.t) {
      case 'hello':
        this.#send(slot, { t: 'config', config: this.config });
        return;
      case 'started':
        if (slot.state === 'starting') slot.state = this.#phase === 'draining' ? 'stopping' : 'running';
        started.resolve();
        // Started while the primary began draining: it stops at once.
        if (slot.state === 'stopping') this.#send(slot, { t: 'shutdown' });
        return;
      case 'start-failed':
        slot.startError = m.error;
        started.reject(new Error(m.error.message));
        return;
      case 'records': {
        const obs = this.#recordObservers;
        for (const r of m.rows) {
          for (let i = 0; i < obs.length; i++) obs[i]!(r);
        }
        return;
      }
      case 'answer': {
        const p = this.#pending.get(m.id);
        if (p === undefined) return; // timed out already
        clearTimeout(p.timer);
        this.#pending.delete(m.id);
        if (m.ok) p.resolve(m.value);
        else p.reject(new Error(m.error));
        return;
      }
      case 'stopped':
        markStopped();
        return;
    }
  }

  #replace(dead: Slot): void {
    // Dying young again and again is a crash loop (a broken certificate file, an upstream
    // library bug): wait longer each time, up to 30 s, so it does not spin on the CPU.
    this.#youngDeaths = Date.now() - dead.forkedAt < STABLE_AFTER_MS ? this.#youngDeaths + 1 : 0;
    const delay = this.#youngDeaths === 0 ? 0 : Math.min(RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MS * 2 ** (this.#youngDeaths - 1));
    const timer = setTimeout(() => {
      this.#restartTimers.delete(timer);
      if (this.#phase !== 'running') return;
      const slot = this.#fork();
      slot.started.then(
        () => this.logger.info({ worker: slot.worker.id, pid: slot.pid, replaced: dead.worker.id }, 'replacement worker started'),
        () => {},
      );
    }, delay);
    this.#restartTimers.add(timer);
    if (delay > 0) this.logger.warn({ delayMs: delay, youngDeaths: this.#youngDeaths }, 'workers keep dying young: restart delayed');
  }

  #send(slot: Slot, msg: ToWorker): void {
    if (!slot.worker.isConnected()) return;
    slot.worker.send(msg, undefined, (err: Error | null) => {
      if (err) this.logger.debug({ err, worker: slot.worker.id }, 'message to worker failed');
    });
  }

  #running(): Slot[] {
    return [...this.#slots.values()].filter((s) => s.state === 'running');
  }

  #ask<Q extends Question>(slot: Slot, q: Q, timeoutMs = ASK_TIMEOUT_MS): Promise<Answers[Q]> {
    return new Promise<Answers[Q]>((resolve, reject) => {
      const id = this.#nextAsk++;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`worker ${slot.worker.id} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { workerId: slot.worker.id, resolve: resolve as (v: unknown) => void, reject, timer });
      this.#send(slot, { t: 'ask', id, q });
    });
  }

  /** Asks every worker that serves (or drains) now; each answer or the reason there is none. */
  async #askAll<Q extends Question>(q: Q, timeoutMs = ASK_TIMEOUT_MS): Promise<Array<Settled<Answers[Q]>>> {
    const slots = [...this.#slots.values()].filter((s) => s.state === 'running' || s.state === 'stopping');
    const results = await Promise.allSettled(slots.map((s) => this.#ask(s, q, timeoutMs)));
    return results.map((r, i) => (r.status === 'fulfilled'
      ? { slot: slots[i]!, value: r.value }
      : { slot: slots[i]!, error: r.reason instanceof Error ? r.reason.message : String(r.reason) }));
  }

  /** Only the answers; a worker that did not answer is left out of lists (and logged). */
  async #answers<Q extends Question>(q: Q): Promise<Array<Answers[Q]>> {
    const out: Array<Answers[Q]> = [];
    for (const r of await this.#askAll(q)) {
      if (r.error !== undefined) this.logger.warn({ worker: r.slot.worker.id, question: q, error: r.error }, 'worker left out of an admin answer');
      else out.push(r.value);
    }
    return out;
  }

  /** /api/status asks for listeners and workers at once: one round trip serves both. */
  #status(): Promise<Array<Settled<Answers['status']>>> {
    this.#statusRound ??= this.#askAll('status').finally(() => { this.#statusRound = null; });
    return this.#statusRound;
  }

  async #workerMetrics(): Promise<{ parts: object[][]; failed: number }> {
    const parts: object[][] = [];
    let failed = 0;
    for (const r of await this.#askAll('metrics')) {
      if (r.error !== undefined) failed++;
      else parts.push(r.value);
    }
    return { parts, failed };
  }

  // ---- AdminView --------------------------------------------------------------------------

  async listeners(): Promise<ListenerView[]> {
    const rounds = await this.#status();
    return mergeListeners(rounds.flatMap((r) => (r.value === undefined ? [] : [r.value.listeners])));
  }

  async workers(): Promise<WorkerView[]> {
    const rounds = await this.#status();
    return rounds.map(({ slot, value }) => ({
      id: slot.worker.id,
      pid: slot.pid,
      phase: value?.phase ?? (slot.state === 'stopping' ? 'draining' : 'starting'),
      startedAt: value?.startedAt ?? slot.forkedAt,
      openConnections: value?.listeners.reduce((n, l) => n + l.stats.open, 0) ?? 0,
      accepted: value?.listeners.reduce((n, l) => n + l.stats.accepted, 0) ?? 0,
    })).sort((a, b) => a.id - b.id);
  }

  async upstreams(): Promise<UpstreamView[]> {
    return mergeUpstreams(await this.#answers('upstreams'));
  }

  async certificates(): Promise<CertificateView[]> {
    return mergeCertificates(await this.#answers('certificates'));
  }

  /** Ready when every worker is running and ready; never throws (a probe must get an answer). */
  async readiness(): Promise<Readiness> {
    const reasons: string[] = [];
    if (this.#phase !== 'running') reasons.push(this.#phase);
    const running = this.#running().length;
    if (running < this.#count) reasons.push(`workers: ${running} of ${this.#count} running`);
    for (const r of await this.#askAll('readiness')) {
      if (r.error !== undefined) reasons.push(`worker ${r.slot.worker.id}: ${r.error}`);
      else for (const why of r.value.reasons) reasons.push(`worker ${r.slot.worker.id}: ${why}`);
    }
    return { ready: reasons.length === 0, reasons };
  }

  /** SIGHUP / POST /api/reload: every worker re-reads its certificates; one merged report. */
  async reload(): Promise<ReloadReport> {
    const results = await this.#askAll('reload', RELOAD_TIMEOUT_MS);
    const report = mergeReloads(results.map((r) => ({ id: r.slot.worker.id, pid: r.slot.pid, report: r.value ?? null, ...(r.error === undefined ? {} : { error: r.error }) })));
    this.logger.info({ workers: results.length, changed: report.changed, errors: report.errors.length }, 'workers reloaded');
    return report;
  }

  adminAddress(): AddressInfo | null {
    return this.#admin ? this.#admin.address() : null;
  }

  // ---- stopping ----------------------------------------------------------------------------

  /**
   * SIGTERM: every worker drains (stops accepting, finishes in-flight requests up to
   * drain_timeout) and sends its last records; then the request log is flushed and closed.
   */
  shutdown(): Promise<void> {
    this.#stopping ??= this.#shutdown();
    return this.#stopping;
  }

  async #shutdown(): Promise<void> {
    if (this.#phase === 'stopped') return;
    this.#phase = 'draining';
    for (const t of this.#restartTimers) clearTimeout(t);
    this.#restartTimers.clear();
    const slots = [...this.#slots.values()];
    this.logger.info({ workers: slots.length, drainTimeoutMs: this.config.server.drainTimeoutMs }, 'draining');
    for (const s of slots) {
      // One still starting is told once it says 'started' (see #onMessage).
      if (s.state === 'running') this.#send(s, { t: 'shutdown' });
      if (s.state !== 'dead') s.state = 'stopping';
    }
    const deadline = this.config.server.drainTimeoutMs + STOP_GRACE_MS;
    const all = Promise.all(slots.map((s) => s.stopped));
    const timedOut = await Promise.race([all.then(() => false), sleep(deadline).then(() => true)]);
    if (timedOut) {
      const left = slots.filter((s) => s.state !== 'dead');
      this.logger.error({ workers: left.map((s) => s.worker.id) }, 'workers did not stop in time: killing them');
      for (const s of left) s.worker.process.kill('SIGKILL');
    }
    // After 'stopped' a worker exits at once; wait for it so its sockets are gone too.
    await Promise.race([Promise.all(slots.map((s) => s.exited)), sleep(STOP_GRACE_MS)]);
    await this.#teardown();
    this.#phase = 'stopped';
    this.logger.info('stopped');
  }

  async #teardown(): Promise<void> {
    for (const s of this.#slots.values()) {
      if (s.state !== 'dead') s.worker.process.kill('SIGKILL');
    }
    for (const p of this.#pending.values()) clearTimeout(p.timer);
    this.#pending.clear();
    if (this.#admin) await this.#admin.close();
    this.#metrics?.close();
    await this.#requestLog?.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** A worker's start failure, as the CLI prints a single process's (exit 1). */
function startFailure(slot: Slot): Error {
  const e = slot.startError;
  if (e === null) return new ProxyError('INTERNAL', `worker ${slot.worker.id} exited while starting`);
  return e.path !== null ? new ConfigError(e.path, e.message) : new ProxyError('INTERNAL', e.message);
}

/** `mtls-proxy start` with server.workers > 1: run until a signal says stop. */
export async function runPrimary(config: Config, count: number): Promise<ClusterPrimary> {
  const primary = new ClusterPrimary(config, count);
  await primary.start();
  installPrimarySignals(primary);
  return primary;
}

export function installPrimarySignals(primary: ClusterPrimary): void {
  installSignals(primary);
}
