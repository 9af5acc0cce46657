// Routes: first match wins on host (exact, or "*.suffix") and path prefix; none matching
// -> the listener's upstream. Compiled once per listener; matching is a linear scan of a
// short list with no allocation.
import type { RouteConfig } from '../config/types.ts';

export interface RouteMatch {
  upstream: string;
  /** The request target as it goes upstream (prefix stripped when asked). */
  target: string;
}

interface CompiledRoute {
  exactHost: string | null;
  /** ".example.com" for "*.example.com": matches "a.example.com", not "example.com". */
  hostSuffix: string | null;
  prefix: string | null;
  strip: boolean;
  upstream: string;
}

/** "Example.COM:8443" -> "example.com"; an IPv6 literal keeps its brackets. */
export function hostWithoutPort(host: string): string {
  let h = host;
  if (h.startsWith('[')) {
    const close = h.indexOf(']');
    h = close === -1 ? h : h.slice(0, close + 1);
  } else {
    const colon = h.lastIndexOf(':');
    if (colon !== -1) h = h.slice(0, colon);
  }
  return h.toLowerCase();
}

export class Router {
  readonly #routes: CompiledRoute[];
  readonly #fallback: string;

  constructor(routes: RouteConfig[], fallback: string) {
    this.#fallback = fallback;
    this.#routes = routes.map((r) => {
      const host = r.host?.toLowerCase() ?? null;
      const wildcard = host !== null && host.startsWith('*.');
      return {
        exactHost: host !== null && !wildcard ? host : null,
        hostSuffix: wildcard ? host.slice(1) : null,
        prefix: r.pathPrefix,
        strip: r.stripPrefix,
        upstream: r.upstream,
      };
    });
  }

  match(host: string, target: string): RouteMatch {
    if (this.#routes.length === 0) return { upstream: this.#fallback, target };
    const h = hostWithoutPort(host);
    for (const r of this.#routes) {
      if (r.exactHost !== null && h !== r.exactHost) continue;
      if (r.hostSuffix !== null && !(h.endsWith(r.hostSuffix) && h.length > r.hostSuffix.length)) continue;
      if (r.prefix !== null && !target.startsWith(r.prefix)) continue;
      if (r.strip && r.prefix !== null) {
        const rest = target.slice(r.prefix.length);
        // "/v1/x" -> "/x"; "/v1" or "/v1?q" -> "/" or "/?q": the target stays origin-form
        return { upstream: r.upstream, target: rest.startsWith('/') ? rest : `/${rest}` };
      }
      return { upstream: r.upstream, target };
    }
    return { upstream: this.#fallback, target };
  }
}
