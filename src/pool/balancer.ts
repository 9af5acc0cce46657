// Round-robin over an upstream's endpoints. An endpoint is healthy when the active check
// (if any) says so and no failed connect put it in back-off (passive health). When none is
// healthy, traffic still goes round-robin to all of them (Envoy's "panic" mode): a dead
// upstream then answers 502 per request instead of a blanket 503 from stale state.
import type { HostPort } from '../config/types.ts';
import type { EndpointSelector, EndpointState } from './types.ts';

export class Endpoint implements EndpointState {
  readonly upstream: string;
  readonly key: string;
  readonly address: HostPort;
  activeHealthy = true;
  backoffUntil = 0;
  lastError: string | null = null;
  consecutiveFailures = 0;

  constructor(upstream: string, address: HostPort) {
    this.upstream = upstream;
    this.address = address;
    this.key = address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
  }

  get healthy(): boolean {
    return this.activeHealthy && Date.now() >= this.backoffUntil;
  }
}

export class Balancer implements EndpointSelector {
  readonly endpoints: Endpoint[];
  readonly #backoffMs: number;
  #next = 0;
  /** Called when an endpoint's health flips (metrics, logs). */
  onHealthChange: ((ep: Endpoint, healthy: boolean) => void) | null = null;

  constructor(upstream: string, addresses: HostPort[], backoffMs: number) {
    this.endpoints = addresses.map((a) => new Endpoint(upstream, a));
    this.#backoffMs = backoffMs;
  }

  pick(exclude: EndpointState | null = null): Endpoint | null {
    const eps = this.endpoints;
    const n = eps.length;
    if (n === 0) return null;
    for (let i = 0; i < n; i++) {
      const ep = eps[(this.#next + i) % n]!;
      if (ep !== exclude && ep.healthy) {
        this.#next = (this.#next + i + 1) % n;
        return ep;
      }
    }
    // panic: nobody healthy, so try them all in turn
    const ep = eps[this.#next % n]!;
    this.#next = (this.#next + 1) % n;
    return ep !== exclude || n === 1 ? ep : eps[this.#next % n]!;
  }

  get anyHealthy(): boolean {
    return this.endpoints.some((e) => e.healthy);
  }

  reportFailure(endpoint: EndpointState, code: string): void {
    const ep = endpoint as Endpoint;
    const wasHealthy = ep.healthy;
    ep.lastError = code;
    ep.consecutiveFailures++;
    ep.backoffUntil = Date.now() + this.#backoffMs;
    if (wasHealthy) this.onHealthChange?.(ep, false);
  }

  reportSuccess(endpoint: EndpointState): void {
    const ep = endpoint as Endpoint;
    ep.consecutiveFailures = 0;
    if (ep.backoffUntil !== 0) {
      const wasHealthy = ep.healthy;
      ep.backoffUntil = 0;
      if (!wasHealthy && ep.healthy) this.onHealthChange?.(ep, true);
    }
  }

  setActiveHealth(ep: Endpoint, healthy: boolean): void {
    if (ep.activeHealthy === healthy) return;
    const was = ep.healthy;
    ep.activeHealthy = healthy;
    if (was !== ep.healthy) this.onHealthChange?.(ep, ep.healthy);
  }
}
