// What the rest of the proxy sees of an upstream's endpoints: the balancer hands one out,
// callers report how connecting to it went (passive health).
import type { HostPort } from '../config/types.ts';

export interface EndpointState {
  /** Upstream name from the config. */
  readonly upstream: string;
  /** "host:port", stable: used as a metric label and in the request log. */
  readonly key: string;
  readonly address: HostPort;
  /** False while a failed connect's back-off runs, or while the active check says so. */
  readonly healthy: boolean;
  /** Last error code seen toward this endpoint, or null. */
  readonly lastError: string | null;
}

export interface EndpointSelector {
  /** Round-robin over healthy endpoints; null when none is healthy. */
  pick(): EndpointState | null;
  reportFailure(endpoint: EndpointState, code: string): void;
  reportSuccess(endpoint: EndpointState): void;
}

/**
 * Node's `onread` socket option: every read lands in `buffer` and is handed to `callback`
 * (bytes read, the buffer) instead of a new Buffer per read emitted as 'data'. The callback
 * must be done with the bytes when it returns: the next read overwrites them.
 */
export interface ReadInto {
  buffer: Buffer;
  callback(nread: number, buffer: Buffer): boolean;
}

/** Opens one mTLS connection to an endpoint (implemented by src/net/upstream-tls.ts). */
export interface TlsConnector {
  connect(endpoint: HostPort, timeoutMs: number, onread?: ReadInto): Promise<import('node:tls').TLSSocket>;
}
