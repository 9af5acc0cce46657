// What a listener's HTTP connections share: config, router, upstream clusters, hooks.
// Built once per listener by the server; read-only on the data path.
import type { ListenerConfig } from '../config/types.ts';
import type { Logger } from '../log.ts';
import type { UpstreamCluster } from '../pool/upstream-cluster.ts';
import type { Router } from './router.ts';

/** One finished request, as the request log and metrics see it (PRODUCT.md "Request log row"). */
export interface RequestRecord {
  id: string;
  /** Start time, ms since the epoch. */
  ts: number;
  listener: string;
  clientAddr: string;
  clientSubject: string | null;
  clientSha256: string | null;
  method: string;
  host: string;
  path: string;
  status: number;
  upstream: string | null;
  endpoint: string | null;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  /** MTLS_ERR_* code when the request failed, else null. */
  error: string | null;
}

export interface ListenerContext {
  readonly config: ListenerConfig;
  readonly router: Router;
  readonly clusters: ReadonlyMap<string, UpstreamCluster>;
  readonly logger: Logger;
  /** Called exactly once per request, on every path. */
  onRequest(record: RequestRecord): void;
  /** True once the server began draining: responses carry Connection: close. */
  isDraining(): boolean;
}
