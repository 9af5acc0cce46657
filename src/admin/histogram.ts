// A Prometheus histogram observed with plain number additions. prom-client's Histogram, even on
// a pre-bound child, builds a label object, validates it, hashes it into a string and looks the
// bucket up by a number-keyed property on every observe; measured beside a proxy without
// metrics (bench/tools/ab.sh off metrics) that was most of the 3.5% the metrics cost per request.
// Here a series is found once (by the caller, who keeps it) and an observation is a bucket
// search over a few bounds and three increments. The registry reads it through the same
// interface as its own metrics (name, help, type, aggregator, get, getForPromString, reset), so the text
// exposition and the AggregatorRegistry merge across workers treat it as any histogram.
import type { Registry } from 'prom-client';

/** One label set's counts. `counts[i]` observations fell in (bounds[i-1], bounds[i]]; the last slot is above every bound. */
export class HistogramSeries {
  readonly labels: Readonly<Record<string, string>>;
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  readonly #bounds: Float64Array;

  constructor(labels: Record<string, string>, bounds: Float64Array) {
    this.labels = labels;
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

interface MetricValue {
  labels: Record<string, string | number>;
  sharedLabels?: Readonly<Record<string, string>>;
  value: number;
  metricName: string;
}

interface MetricData {
  name: string;
  help: string;
  type: string;
  aggregator: string;
  values: MetricValue[];
}

export class FastHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly labelNames: readonly L[];
  readonly #bounds: Float64Array;
  readonly #series = new Map<string, HistogramSeries>();

  constructor(opts: { name: string; help: string; labelNames: readonly L[]; buckets: readonly number[]; registers: Registry[] }) {
    const sorted = [...opts.buckets].sort((a, b) => a - b);
    if (sorted.some((b, i) => !Number.isFinite(b) || b === sorted[i - 1])) throw new RangeError(`${opts.name}: buckets must be finite and distinct`);
    this.name = opts.name;
    this.help = opts.help;
    this.labelNames = opts.labelNames;
    this.#bounds = Float64Array.from(sorted);
    // registerMetric reads name, help, type, aggregator and calls get() and reset()
    for (const r of opts.registers) r.registerMetric(this as unknown as Parameters<Registry['registerMetric']>[0]);
  }

  /** The series of these label values, made on first use (exported at 0 from then on). */
  series(labels: Record<L, string>): HistogramSeries {
    const key = this.labelNames.map((n) => labels[n]).join('\u0000');
    let s = this.#series.get(key);
    if (s === undefined) {
      s = new HistogramSeries({ ...labels }, this.#bounds);
      this.#series.set(key, s);
    }
    return s;
  }

  /** Drops every count; series handed out before keep counting but are no longer exported. */
  reset(): void {
    this.#series.clear();
  }

  /** For the registry's text exposition: `le` first, then the series' labels, as prom-client prints them. */
  getForPromString(): Promise<MetricData> {
    return Promise.resolve(this.#data(false));
  }

  /** For getMetricsAsJSON (and so the merge across workers): the labels in one object. */
  get(): Promise<MetricData> {
    return Promise.resolve(this.#data(true));
  }

  #data(merged: boolean): MetricData {
    const values: MetricValue[] = [];
    const bucket = `${this.name}_bucket`;
    const bounds = this.#bounds;
    const value = (le: Record<string, string | number>, s: HistogramSeries, v: number, metricName: string): MetricValue =>
      merged ? { labels: { ...le, ...s.labels }, value: v, metricName } : { labels: le, sharedLabels: s.labels, value: v, metricName };
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < bounds.length; i++) {
        acc += s.counts[i]!;
        values.push(value({ le: bounds[i]! }, s, acc, bucket));
      }
      values.push(value({ le: '+Inf' }, s, s.count, bucket));
      values.push(value({}, s, s.sum, `${this.name}_sum`));
      values.push(value({}, s, s.count, `${this.name}_count`));
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
