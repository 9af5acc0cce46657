// How the primary of several workers turns each worker's answer into the one view the admin
// API serves. Pure functions over the workers' answers, in worker order.
import type { CertificateView, ListenerView, ReloadReport, UpstreamView } from '../admin/types.ts';
import type { EndpointReport } from '../pool/upstream-cluster.ts';

/** Listeners by name: the workers share each listening socket, so counts add up. */
export function mergeListeners(perWorker: readonly ListenerView[][]): ListenerView[] {
  const byName = new Map<string, ListenerView & { stats: { tlsErrors: Map<string, number> } }>();
  for (const list of perWorker) {
    for (const l of list) {
      const seen = byName.get(l.name);
      if (seen === undefined) {
        byName.set(l.name, { ...l, stats: { ...l.stats, tlsErrors: new Map(l.stats.tlsErrors) } });
        continue;
      }
      const s = seen.stats;
      s.open += l.stats.open;
      s.accepted += l.stats.accepted;
      s.refused += l.stats.refused;
      s.bytesIn += l.stats.bytesIn;
      s.bytesOut += l.stats.bytesOut;
      for (const [reason, n] of l.stats.tlsErrors) s.tlsErrors.set(reason, (s.tlsErrors.get(reason) ?? 0) + n);
      // A worker that closed its listener (draining) reports no address; another may still.
      if (seen.address === '') seen.address = l.address;
    }
  }
  return [...byName.values()];
}

/**
 * Endpoints by upstream and address: every worker has its own pool, so pool counts add up.
 * Each worker also runs its own health checks: an endpoint is healthy when it is in rotation
 * in every worker (as the mtls_proxy_upstream_endpoint_healthy gauge, aggregated by "min"),
 * and the last error is the first one any worker reports.
 */
export function mergeUpstreams(perWorker: readonly UpstreamView[][]): UpstreamView[] {
  const byName = new Map<string, Map<string, EndpointReport>>();
  for (const list of perWorker) {
    for (const u of list) {
      let endpoints = byName.get(u.name);
      if (endpoints === undefined) {
        endpoints = new Map();
        byName.set(u.name, endpoints);
      }
      for (const e of u.endpoints) {
        const seen = endpoints.get(e.endpoint);
        if (seen === undefined) {
          endpoints.set(e.endpoint, { ...e });
          continue;
        }
        seen.size += e.size;
        seen.idle += e.idle;
        seen.busy += e.busy;
        seen.pending += e.pending;
        seen.healthy &&= e.healthy;
        seen.lastError ??= e.lastError;
      }
    }
  }
  return [...byName].map(([name, endpoints]) => ({ name, endpoints: [...endpoints.values()] }));
}

/**
 * The union: every worker holds the same files (after the same reloads), and each has seen its
 * own clients. A certificate is one entry per role, owner and fingerprint.
 */
export function mergeCertificates(perWorker: readonly CertificateView[][]): CertificateView[] {
  const byKey = new Map<string, CertificateView>();
  for (const list of perWorker) {
    for (const c of list) {
      const key = `${c.role}\n${c.owner}\n${c.sha256}`;
      if (!byKey.has(key)) byKey.set(key, c);
    }
  }
  return [...byKey.values()];
}

export interface WorkerReload {
  id: number;
  pid: number;
  report: ReloadReport | null;
  /** Set when the worker could not be asked (it died, or did not answer in time). */
  error?: string;
}

/**
 * One report for all workers: a key path changed when it changed in any worker, is unchanged
 * when unchanged in all, and every worker's refusals are listed (deduplicated: the same bad file
 * fails the same way everywhere). A worker that could not be asked is an error of its own.
 */
export function mergeReloads(workers: readonly WorkerReload[]): ReloadReport {
  const changed = new Set<string>();
  const unchanged = new Set<string>();
  const errors = new Map<string, { what: string; error: string }>();
  const perWorker: NonNullable<ReloadReport['workers']> = [];
  for (const w of workers) {
    if (w.report === null) {
      const e = { what: `worker ${w.id}`, error: w.error ?? 'no answer' };
      errors.set(`${e.what}\n${e.error}`, e);
      perWorker.push({ id: w.id, pid: w.pid, changed: [], unchanged: [], errors: [e] });
      continue;
    }
    for (const what of w.report.changed) changed.add(what);
    for (const what of w.report.unchanged) unchanged.add(what);
    for (const e of w.report.errors) errors.set(`${e.what}\n${e.error}`, e);
    perWorker.push({ id: w.id, pid: w.pid, changed: w.report.changed, unchanged: w.report.unchanged, errors: w.report.errors });
  }
  for (const what of changed) unchanged.delete(what);
  return { changed: [...changed], unchanged: [...unchanged], errors: [...errors.values()], workers: perWorker };
}
