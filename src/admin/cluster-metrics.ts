// /metrics of the primary of several workers (server.workers > 1): each worker's registry (the
// Metrics class in metrics.ts, asked over IPC) and the primary's own, merged by prom-client's
// AggregatorRegistry.aggregate according to each metric's `aggregator` (see metrics.ts). The
// primary's own registry holds what only it counts: admin sign-in failures (the admin listener
// runs here), the workers and their restarts, and its process metrics (so process CPU and
// memory add up to the whole proxy).
//
// Not AggregatorRegistry#clusterMetrics(): it asks only the workers (the primary's own series
// would be missing), fails the whole scrape when one worker does not answer within its fixed
// 5 s, and uses a second IPC protocol beside the one the admin API already needs.
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import { authFailureLabel, authFailuresCounter, collectErrorsCounter, PREFIX, registerProcessMetrics, registerRequestLogMetrics } from './metrics.ts';
import type { RequestLogStats } from './request-log.ts';
import type { MetricsLike } from './server.ts';

export interface WorkerMetricsSource {
  /** Each answering worker's registry as JSON, and how many workers did not answer. */
  workerMetrics(): Promise<{ parts: object[][]; failed: number }>;
  /** Worker processes serving now. */
  runningWorkers(): number;
}

export class ClusterMetrics implements MetricsLike {
  readonly registry = new Registry();
  readonly contentType: string;
  readonly #source: WorkerMetricsSource;
  readonly #authFailures: Counter<'reason'>;
  readonly #collectErrors: Counter<'metric'>;
  readonly #restarts: Counter;

  constructor(source: WorkerMetricsSource, requestLogStats?: () => RequestLogStats) {
    this.#source = source;
    this.contentType = this.registry.contentType;
    const registers = [this.registry];
    registerProcessMetrics(this.registry);
    this.#authFailures = authFailuresCounter(registers);
    this.#collectErrors = collectErrorsCounter(registers);
    // the primary writes the request log of every worker
    if (requestLogStats !== undefined) registerRequestLogMetrics(registers, requestLogStats);
    this.#restarts = new Counter({
      name: `${PREFIX}worker_restarts_total`, help: 'Worker processes that exited unexpectedly and were replaced.', registers,
    });
    new Gauge({
      name: `${PREFIX}workers`, help: 'Worker processes serving the listeners now (server.workers).', registers,
      collect() {
        this.set(source.runningWorkers());
      },
    });
  }

  async render(): Promise<string> {
    const { parts, failed } = await this.#source.workerMetrics();
    // A worker that did not answer is left out of this scrape: its counters dip, which
    // Prometheus' rate() reads as a counter reset (as it does when a worker is replaced).
    if (failed > 0) this.#collectErrors.inc({ metric: 'worker' }, failed);
    const own = await this.registry.getMetricsAsJSON();
    return AggregatorRegistry.aggregate([...parts, own]).metrics();
  }

  authFailure(reason: string): void {
    this.#authFailures.inc({ reason: authFailureLabel(reason) });
  }

  workerRestarted(): void {
    this.#restarts.inc();
  }

  close(): void {
    this.registry.clear();
  }
}
