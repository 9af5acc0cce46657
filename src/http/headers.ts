// Header rules shared by both directions: hop-by-hop removal (RFC 9110 §7.6.1), the
// X-Forwarded-* family, the request id, and XFCC stripping. Headers are [name, value]
// string pairs in arrival order; names keep the case the peer sent.
import { randomUUID } from 'node:crypto';

export type HeaderList = string[]; // flat: name0, value0, name1, value1, ...

/** Always hop-by-hop (RFC 9110 §7.6.1), plus the de-facto Proxy-* family and Keep-Alive. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate']);

export function isHopByHop(lowerName: string): boolean {
  return HOP_BY_HOP.has(lowerName) || lowerName.startsWith('proxy-');
}

/** Tokens of every Connection header ("close, X-Foo" -> ["close", "x-foo"]). */
export function connectionTokens(values: string[]): Set<string> {
  const out = new Set<string>();
  for (const v of values) {
    for (const t of v.split(',')) {
      const tok = t.trim().toLowerCase();
      if (tok) out.add(tok);
    }
  }
  return out;
}

// A valid client X-Request-Id: 1-128 of A-Za-z0-9._:- (PRODUCT.md). Anything else could
// inject into logs or downstream systems, so it is replaced, not sanitised.
const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

export function isValidRequestId(v: string): boolean {
  return REQUEST_ID_RE.test(v);
}

export function newRequestId(): string {
  return randomUUID();
}

/** "::ffff:127.0.0.1" -> "127.0.0.1": the form X-Forwarded-For and the request log use. */
export function clientAddress(remote: string | undefined): string {
  if (!remote) return '';
  return remote.startsWith('::ffff:') ? remote.slice(7) : remote;
}

/** Header value as sent on the wire: nothing here may contain CR or LF. */
export function assertSafeValue(v: string): boolean {
  return !/[\r\n\0]/.test(v);
}
