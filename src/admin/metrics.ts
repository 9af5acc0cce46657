// Every Prometheus metric of the product, by name, in this one file (PRODUCT.md "Metrics").
// Two kinds of source: events from the data path, which only touch series found by a cached
// lookup (no label objects or strings built per request), and gauges that read the ProxyView
// when scraped, so the data path pays nothing for them at all.
//
// prom-client hashes and validates the labels on every call, even on a pre-bound child (~350ns
// each here). So per-request counters are plain numbers beside their pre-bound child, added to
// it when scraped, and the duration histogram is our own (histogram.ts): three additions.
import { createRequire } from 'node:module';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RequestRecord } from '../http/context.ts';
import { FastHistogram, type HistogramSeries } from './histogram.ts';
import type { RequestLogStats } from './request-log.ts';
import type { ProxyEvents, ProxyView } from './types.ts';

export const PREFIX = 'mtls_proxy_';

// Proxied requests span sub-millisecond cache-like answers to long uploads; 30s is the default
// response_header timeout, beyond which the exact value no longer matters for alerting.
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
// A TLS connect on a LAN is a few ms; the default connect timeout is 2s, allow slow links to 10s.
const CONNECT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

// Methods are labels only from this set: anything else a client sends is "OTHER", so a client
// cannot mint series (llhttp accepts dozens of WebDAV/RTSP methods).
const KNOWN_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'OTHER'] as const;
const OTHER_METHOD = KNOWN_METHODS.length - 1;
const METHOD_INDEX: ReadonlyMap<string, number> = new Map(KNOWN_METHODS.map((m, i) => [m, i]));

/** Status codes outside 100..599 (the proxy produces none) become code "0". */
const MAX_STATUS = 600;
const NO_UPSTREAM = 'none';
const DEFAULT_CLIENT_CERT_LIMIT = 128;
// Reasons come from our own code (auth, TLS); the shape check keeps a bug from minting series.
const LABEL_SAFE = /^[a-z0-9_]{1,48}$/;

type RequestLabels = 'listener' | 'upstream' | 'method' | 'code';

/** A counter series' pre-bound child and what the data path added since the last scrape. */
interface Tally {
  readonly child: Counter.Internal;
  pending: number;
}

/** Series of one (listener, upstream) pair. */
interface RouteSeries {
  readonly listener: string;
  readonly upstream: string;
  readonly duration: HistogramSeries;
  /** Index: method * MAX_STATUS + status; a tally is made on first sight of its pair. */
  readonly byMethodCode: Array<Tally | undefined>;
}

interface ListenerSeries {
  readonly received: Tally;
  readonly sent: Tally;
  /** upstream name (or NO_UPSTREAM) -> its series. */
  readonly routes: Map<string, RouteSeries>;
}

export interface MetricsOptions {
  /** Most client certificates exported by the expiry gauge (most recently seen win). */
  clientCertLimit?: number;
  /** The request log's counters, when this process writes one ([request_log]). */
  requestLogStats?: () => RequestLogStats;
}

/**
 * The request log's own health, read at scrape time: rows written, rows dropped because the
 * in-memory queue was full (never silently), rows waiting for the next flush. Registered by the
 * process that writes the log: the only process, or the primary of several workers.
 */
export function registerRequestLogMetrics(registers: Registry[], stats: () => RequestLogStats): void {
  new Counter({
    name: `${PREFIX}request_log_rows_written_total`, help: 'Request log rows written to SQLite.', registers,
    collect() {
      this.reset();
      this.inc(stats().written);
    },
  });
  new Counter({
    name: `${PREFIX}request_log_rows_dropped_total`, help: 'Request log rows dropped because the write queue was full (the proxy never waits for the log).', registers,
    collect() {
      this.reset();
      this.inc(stats().dropped);
    },
  });
  new Counter({
    name: `${PREFIX}request_log_write_seconds_total`, help: 'Time the writing process spent inserting request log rows (its event loop waits meanwhile).', registers,
    collect() {
      this.reset();
      this.inc(stats().writeSeconds);
    },
  });
  new Gauge({
    name: `${PREFIX}request_log_queue_rows`, help: 'Request log rows queued in memory for the next write.', registers,
    collect() {
      this.set(stats().queued);
    },
  });
}

// prom-client's default process metrics, minus one: nodejs_gc_duration_seconds. It observes
// every GC through a perf_hooks 'gc' observer, and Node builds a PerformanceEntry (with
// deprecated accessors) per collection: with --max-semi-space-size=1 the proxy runs ~250
// scavenges/s under load, and that observer alone cost ~0.9 µs per request (2% of the proxy's
// CPU, measured with --cpu-prof). The rest are collected at scrape time or are native
// histograms, free on the data path. collectDefaultMetrics has no way to leave one out, so
// each collector is registered here as it does (prom-client has no "exports" map; the paths
// are stable across 15.x, and a test checks the names).
const DEFAULT_COLLECTORS = [
  'processCpuTotal', 'processStartTime', 'osMemoryHeap', 'processOpenFileDescriptors', 'processMaxFileDescriptors',
  'eventLoopLag', 'processResources', 'processHandles', 'processRequests', 'heapSizeAndUsed', 'heapSpacesSizeAndUsed', 'version',
] as const;
type Collector = (registry: Registry, config: Record<string, unknown>) => void;
const requirePromClient = createRequire(import.meta.url);

export function registerProcessMetrics(registry: Registry): void {
  const config = { register: registry, prefix: PREFIX, eventLoopMonitoringPrecision: 10 };
  for (const name of DEFAULT_COLLECTORS) {
    (requirePromClient(`prom-client/lib/metrics/${name}.js`) as Collector)(registry, config);
  }
}

/**
 * Counted where the admin listener runs: this process, or the primary of several workers.
 * Defined once here so both export the same series.
 */
export function authFailuresCounter(registers: Registry[]): Counter<'reason'> {
  return new Counter({
    name: `${PREFIX}admin_auth_failures_total`, help: 'Admin API requests refused for authentication, by reason.',
    labelNames: ['reason'], registers,
  });
}

/** Scrape-time failures, by what could not be read: a gauge's name, or "worker" (a worker that did not answer). */
export function collectErrorsCounter(registers: Registry[]): Counter<'metric'> {
  return new Counter({
    name: `${PREFIX}metrics_collect_errors_total`, help: 'Scrapes where reading a gauge from the proxy (metric = its name) or a worker\'s metrics (metric = "worker") failed; that part was left out, the rest exported.',
    labelNames: ['metric'], registers,
  });
}

/** Auth failure reasons are fixed words of the auth layer; anything else is "other". */
export function authFailureLabel(reason: string): string {
  return LABEL_SAFE.test(reason) ? reason : 'other';
}

// With several workers (server.workers > 1) each worker keeps this registry and the primary
// merges them with prom-client's AggregatorRegistry.aggregate, by each metric's `aggregator`:
// counters, histograms and the connection/pool gauges add up ("sum", the default); the
// per-endpoint health gauge takes the minimum, so 1 means "in rotation in every worker" and
// an alert on 0 fires as soon as one worker has taken the endpoint out; expiry timestamps
// take the minimum too, the earliest expiry being the one to alert on.

export class Metrics {
  readonly registry: Registry;
  readonly contentType: string;
  readonly #view: ProxyView;
  readonly #clientCertLimit: number;
  readonly #requests: Counter<RequestLabels>;
  readonly #duration: FastHistogram<'listener' | 'upstream'>;
  readonly #bytesIn: Counter<'listener'>;
  readonly #bytesOut: Counter<'listener'>;
  readonly #connect: Histogram<'upstream'>;
  readonly #connectErrors: Counter<'upstream'>;
  readonly #tlsErrors: Counter<'listener' | 'reason'>;
  readonly #authFailures: Counter<'reason'>;
  readonly #listeners = new Map<string, ListenerSeries>();
  readonly #tallies: Tally[] = [];
  readonly #connectChildren = new Map<string, { ok: Histogram.Internal<'upstream'>; failed: Counter.Internal }>();
  /** listener -> reason -> child; both keys come from bounded sets. */
  readonly #tlsChildren = new Map<string, Map<string, Counter.Internal>>();
  #closed = false;

  constructor(view: ProxyView, events: ProxyEvents, opts: MetricsOptions = {}) {
    this.#view = view;
    this.#clientCertLimit = opts.clientCertLimit ?? DEFAULT_CLIENT_CERT_LIMIT;
    // Our own registry, never the global one: several proxies (tests, workers) in one process.
    this.registry = new Registry();
    const registers = [this.registry];
    this.contentType = this.registry.contentType;
    registerProcessMetrics(this.registry);

    // Each tallied counter settles every tally before it is read; the first one does the work.
    const collect = this.#settle;
    this.#requests = new Counter({
      name: `${PREFIX}requests_total`, help: 'HTTP requests handled, by listener, upstream ("none" when answered locally), method and status code.',
      labelNames: ['listener', 'upstream', 'method', 'code'], registers, collect,
    });
    this.#duration = new FastHistogram({
      name: `${PREFIX}request_duration_seconds`, help: 'Time from the first byte of a request to the end of its response.',
      labelNames: ['listener', 'upstream'], buckets: REQUEST_BUCKETS, registers,
    });
    this.#connect = new Histogram({
      name: `${PREFIX}upstream_connect_duration_seconds`, help: 'Time to open an mTLS connection to an upstream endpoint (TCP + handshake), successful connects.',
      labelNames: ['upstream'], buckets: CONNECT_BUCKETS, registers,
    });
    this.#connectErrors = new Counter({
      name: `${PREFIX}upstream_connect_errors_total`, help: 'Failed connection attempts to upstream endpoints.',
      labelNames: ['upstream'], registers,
    });
    this.#bytesIn = new Counter({
      name: `${PREFIX}bytes_received_total`, help: 'Bytes received from clients: request bodies (http listeners, as the request log counts bytes_in), tunnelled bytes (tcp listeners).',
      labelNames: ['listener'], registers, collect,
    });
    this.#bytesOut = new Counter({
      name: `${PREFIX}bytes_sent_total`, help: 'Bytes sent to clients: responses (http listeners, as the request log counts bytes_out), tunnelled bytes (tcp listeners).',
      labelNames: ['listener'], registers, collect,
    });
    this.#tlsErrors = new Counter({
      name: `${PREFIX}tls_handshake_errors_total`, help: 'Client TLS handshakes that failed or connections refused right after it, by reason.',
      labelNames: ['listener', 'reason'], registers,
    });
    this.#authFailures = authFailuresCounter(registers);
    this.#registerScrapeGauges(registers);
    if (opts.requestLogStats !== undefined) registerRequestLogMetrics(registers, opts.requestLogStats);

    events.onRequest(this.#onRequest);
    events.onUpstreamConnect(this.#onConnect);
    events.onTlsError(this.#onTlsError);
    events.onTunnelEnd(this.#onTunnelEnd);
  }

  /** The Prometheus text exposition of everything in this registry. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Counted by the admin auth layer; `reason` is one of its fixed words ("bad_credentials", ...). */
  authFailure(reason: string): void {
    if (this.#closed) return;
    this.#authFailures.inc({ reason: authFailureLabel(reason) });
  }

  /** Stops counting (ProxyEvents has no unsubscribe) and drops every series. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.registry.clear();
    this.#listeners.clear();
    this.#tallies.length = 0;
    this.#connectChildren.clear();
    this.#tlsChildren.clear();
  }

  // ---- data path: cached lookups, number additions, one histogram observe -------------------

  readonly #onRequest = (r: RequestRecord): void => {
    if (this.#closed) return;
    const l = this.#listeners.get(r.listener) ?? this.#addListener(r.listener);
    const upstream = r.upstream ?? NO_UPSTREAM;
    const route = l.routes.get(upstream) ?? this.#addRoute(l, r.listener, upstream);
    const method = METHOD_INDEX.get(r.method) ?? OTHER_METHOD;
    const status = r.status >= 100 && r.status < MAX_STATUS ? r.status : 0;
    const slot = method * MAX_STATUS + status;
    (route.byMethodCode[slot] ?? this.#addCode(route, slot, method, status)).pending++;
    l.received.pending += r.bytesIn;
    l.sent.pending += r.bytesOut;
    route.duration.observe(r.durationMs / 1000);
  };

  readonly #onConnect = (upstream: string, _endpoint: string, seconds: number, ok: boolean): void => {
    if (this.#closed) return;
    let c = this.#connectChildren.get(upstream);
    if (c === undefined) {
      c = { ok: this.#connect.labels(upstream), failed: this.#connectErrors.labels(upstream) };
      this.#connectChildren.set(upstream, c);
    }
    // Failed attempts are counted, not timed: their duration is the timeout or an instant refusal.
    if (ok) c.ok.observe(seconds);
    else c.failed.inc();
  };

  readonly #onTlsError = (listener: string, reason: string): void => {
    if (this.#closed) return;
    let byReason = this.#tlsChildren.get(listener);
    if (byReason === undefined) {
      byReason = new Map();
      this.#tlsChildren.set(listener, byReason);
    }
    let child = byReason.get(reason);
    if (child === undefined) {
      child = this.#tlsErrors.labels(listener, LABEL_SAFE.test(reason) ? reason : 'other');
      byReason.set(reason, child);
    }
    child.inc();
  };

  readonly #onTunnelEnd = (listener: string, bytesIn: number, bytesOut: number): void => {
    if (this.#closed) return;
    const l = this.#listeners.get(listener) ?? this.#addListener(listener);
    l.received.pending += bytesIn;
    l.sent.pending += bytesOut;
  };

  readonly #settle = (): void => {
    const tallies = this.#tallies;
    for (let i = 0; i < tallies.length; i++) {
      const t = tallies[i]!;
      if (t.pending > 0) {
        t.child.inc(t.pending);
        t.pending = 0;
      }
    }
  };

  // Slow paths: run once per new (listener, upstream, method, code), never again for it.

  #tally(child: Counter.Internal): Tally {
    // inc(0) makes the series exist from its first event, before any scrape settles it.
    child.inc(0);
    const t = { child, pending: 0 };
    this.#tallies.push(t);
    return t;
  }

  #addListener(name: string): ListenerSeries {
    const l: ListenerSeries = { received: this.#tally(this.#bytesIn.labels(name)), sent: this.#tally(this.#bytesOut.labels(name)), routes: new Map() };
    this.#listeners.set(name, l);
    return l;
  }

  #addRoute(l: ListenerSeries, listener: string, upstream: string): RouteSeries {
    // Allocated full size (9 x 600 slots) so V8 keeps it a flat array: a sparse one turns into a
    // dictionary once indexes jump past its length.
    const byMethodCode = new Array<Tally | undefined>(KNOWN_METHODS.length * MAX_STATUS).fill(undefined);
    const route: RouteSeries = { listener, upstream, duration: this.#duration.series({ listener, upstream }), byMethodCode };
    l.routes.set(upstream, route);
    return route;
  }

  #addCode(route: RouteSeries, slot: number, method: number, status: number): Tally {
    const t = this.#tally(this.#requests.labels(route.listener, route.upstream, KNOWN_METHODS[method]!, String(status)));
    route.byMethodCode[slot] = t;
    return t;
  }

  // ---- scrape time: gauges read from the view -------------------------------------------------

  #registerScrapeGauges(registers: Registry[]): void {
    const view = this.#view;
    const limit = this.#clientCertLimit;
    // Registered after the gauges (below), so a scrape shows its own failures.
    const failures = collectErrorsCounter([]);
    // One failing source (a certificate that no longer parses) must not blank the whole scrape:
    // Prometheus would lose every other series with it.
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], fill: (g: Gauge<L>) => void, aggregator: 'sum' | 'min' = 'sum'): void => {
      new Gauge<L>({
        name: `${PREFIX}${name}`, help, labelNames, registers, aggregator,
        collect() {
          this.reset();
          try {
            fill(this);
          } catch {
            this.reset();
            failures.inc({ metric: name });
          }
        },
      });
    };
    gauge('active_connections', 'Client connections open now (after the TLS handshake).', ['listener'], (g) => {
      for (const l of view.listeners()) g.set({ listener: l.name }, l.stats.open);
    });
    gauge('upstream_endpoint_healthy', '1 when the upstream endpoint is in rotation, 0 when marked unhealthy.', ['upstream', 'endpoint'], (g) => {
      for (const u of view.upstreams()) {
        for (const e of u.endpoints) g.set({ upstream: u.name, endpoint: e.endpoint }, e.healthy ? 1 : 0);
      }
    }, 'min');
    gauge('upstream_pool_connections', 'Pooled upstream connections by state: idle, busy (lent to a request), pending (requests waiting for one).', ['upstream', 'endpoint', 'state'], (g) => {
      for (const u of view.upstreams()) {
        for (const e of u.endpoints) {
          g.set({ upstream: u.name, endpoint: e.endpoint, state: 'idle' }, e.idle);
          g.set({ upstream: u.name, endpoint: e.endpoint, state: 'busy' }, e.busy);
          g.set({ upstream: u.name, endpoint: e.endpoint, state: 'pending' }, e.pending);
        }
      }
    });
    gauge('certificate_expiry_timestamp_seconds', 'notAfter of each certificate the proxy holds and of client certificates recently presented to it, as a Unix timestamp.', ['role', 'subject'], (g) => {
      const certs = view.certificates();
      // Client entries come oldest first; keep only the most recent `limit` of them.
      let skipClients = Math.max(0, certs.filter((c) => c.role === 'client').length - limit);
      const earliest = new Map<string, { role: string; subject: string; at: number }>();
      for (const c of certs) {
        if (c.role === 'client' && skipClients > 0) {
          skipClients--;
          continue;
        }
        // Two certificates can share role and subject (a renewed client, one CA for two
        // listeners): export the earliest expiry, the one an alert must fire for.
        const key = `${c.role}\n${c.subject}`;
        const at = Math.floor(c.notAfter.getTime() / 1000);
        const seen = earliest.get(key);
        if (seen === undefined || at < seen.at) earliest.set(key, { role: c.role, subject: c.subject, at });
      }
      for (const e of earliest.values()) g.set({ role: e.role, subject: e.subject }, e.at);
    }, 'min');
    this.registry.registerMetric(failures);
  }
}
