// The IPC messages between the primary and its workers (server.workers > 1). The channel uses
// node:cluster's 'advanced' serialization (the structured clone algorithm), so the config's
// Map, certificates' Dates and listeners' tlsErrors Maps cross it as they are.
import type { Config } from '../config/types.ts';
import type { RequestRecord } from '../http/context.ts';
import type { CertificateView, ListenerView, Phase, Readiness, ReloadReport, UpstreamView } from '../admin/types.ts';

/** What a worker answers for each question the primary asks. */
export interface Answers {
  status: { pid: number; phase: Phase; startedAt: number; listeners: ListenerView[] };
  upstreams: UpstreamView[];
  certificates: CertificateView[];
  readiness: Readiness;
  reload: ReloadReport;
  /** registry.getMetricsAsJSON() of the worker's metrics, for AggregatorRegistry.aggregate. */
  metrics: object[];
}
export type Question = keyof Answers;

/** A start failure as the CLI prints it: with a config key path when the error names one. */
export interface StartError {
  message: string;
  path: string | null;
}

export type ToWorker =
  | { t: 'config'; config: Config }
  | { t: 'ask'; id: number; q: Question }
  | { t: 'shutdown' };

export type ToPrimary =
  | { t: 'hello' }
  | { t: 'started' }
  | { t: 'start-failed'; error: StartError }
  | { t: 'records'; rows: RequestRecord[] }
  | { t: 'answer'; id: number; ok: true; value: Answers[Question] }
  | { t: 'answer'; id: number; ok: false; error: string }
  /** The last message: every record was sent before it. */
  | { t: 'stopped' };

const TO_PRIMARY = new Set(['hello', 'started', 'start-failed', 'records', 'answer', 'stopped']);
const TO_WORKER = new Set(['config', 'ask', 'shutdown']);

// prom-client and Node itself use the same channel (NODE_CLUSTER internal messages are
// filtered by Node; prom-client's are not): only our own shapes get through.
export function isToPrimary(m: unknown): m is ToPrimary {
  return typeof m === 'object' && m !== null && TO_PRIMARY.has((m as { t?: unknown }).t as string);
}

export function isToWorker(m: unknown): m is ToWorker {
  return typeof m === 'object' && m !== null && TO_WORKER.has((m as { t?: unknown }).t as string);
}
