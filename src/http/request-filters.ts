// Request filters: what the upstream sees. Hop-by-hop headers removed (RFC 9110 §7.6.1),
// the client's X-Forwarded-Client-Cert dropped (clients cannot forge an identity), XFF
// appended, X-Forwarded-Proto set, the request id kept or generated, framing re-declared.
import { ProxyError } from '../errors.ts';
import { canonicalDigits, connectionTokens, headWriter, isHopByHop, isValidRequestId, newRequestId } from './headers.ts';
import type { RequestHead } from './request-head.ts';

export interface TargetForm {
  /** origin-form target ("/path?q"). */
  target: string;
  /** Host to route on and send: the Host header, or the authority of an absolute-form target. */
  host: string;
  /** Path without the query, for the request log. */
  path: string;
}

// RFC 9112 §3.2 / RFC 3986 §3.2.2-3.2.3: uri-host [ ":" port ], uri-host an IP-literal or a
// reg-name (unreserved, pct-encoded, sub-delims). No userinfo ("@"; RFC 9110 §4.2.4 says treat
// it as an error), no path, no whitespace, no bytes above 0x7F: a Host the router and the origin
// could read differently ("Host of troubles", HTTP Garden server bug 46) is a 400. Empty is allowed
// (HTTP/1.0 without Host, or a URI without authority).
const HOST = /^(\[[0-9A-Fa-f:.]+\]|([A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(:[0-9]*)?$/;

/**
 * RFC 9112 §3.2: origin-form ("/x"), absolute-form ("https://h/x": its authority wins over
 * Host, §3.2.2), asterisk-form ("*", OPTIONS only). Anything else is a 400.
 */
export function normaliseTarget(head: RequestHead): TargetForm | ProxyError {
  const t = head.target;
  let target = t;
  let host = head.host;
  if (!HOST.test(host)) return new ProxyError('BAD_REQUEST', 'Host is not a valid host[:port]');
  if (t.charCodeAt(0) !== 47 /* / */) {
    if (t === '*' && head.method === 'OPTIONS') {
      return { target: t, host, path: '*' };
    }
    const m = /^https?:\/\/([^/?#]+)(.*)$/i.exec(t);
    if (m === null) return new ProxyError('BAD_REQUEST', 'request target is not in origin or absolute form');
    host = m[1]!;
    if (!HOST.test(host)) return new ProxyError('BAD_REQUEST', 'request target has an invalid authority (userinfo or bad characters)');
    target = m[2] === '' ? '/' : m[2]!;
    if (target.charCodeAt(0) !== 47) target = `/${target}`;
  }
  const q = target.indexOf('?');
  return { target, host, path: q === -1 ? target : target.slice(0, q) };
}

export function requestIdOf(head: RequestHead): string {
  let found: string | null = null;
  const { lower, headers } = head;
  for (let i = 0; i < lower.length; i++) {
    if (lower[i] === 'x-request-id') {
      if (found !== null) return newRequestId(); // two ids: trust neither
      found = headers[2 * i + 1]!;
    }
  }
  return found !== null && isValidRequestId(found) ? found : newRequestId();
}

export interface ForwardInfo {
  target: string;
  host: string;
  requestId: string;
  clientAddr: string;
  /** XFCC value for the client's certificate, or null when none was presented. */
  xfcc: string | null;
  /** The protocol to ask the upstream to switch to (websocketUpgrade), or null. */
  upgrade: string | null;
}

/**
 * The client's Upgrade value when the request is a WebSocket opening handshake we forward (RFC
 * 6455 §4.1: a GET, without a body, with Connection: upgrade, which llhttp's upgrade flag
 * reports, and one Upgrade field naming websocket), else null. Any other Upgrade (h2c, a list,
 * a request with a body) is dropped as hop-by-hop and the request goes on as a plain one: a
 * protocol switch we don't understand would turn the rest of the connection into bytes we
 * relay unchecked (h2c smuggling).
 */
export function websocketUpgrade(head: RequestHead): string | null {
  if (!head.upgrade || head.method !== 'GET' || head.chunked || head.contentLength > 0) return null;
  let value: string | null = null;
  const { lower, headers } = head;
  for (let i = 0; i < lower.length; i++) {
    if (lower[i] !== 'upgrade') continue;
    if (value !== null) return null;
    value = headers[2 * i + 1]!;
  }
  return value !== null && value.toLowerCase() === 'websocket' ? value : null;
}

export function upstreamHead(head: RequestHead, info: ForwardInfo): Buffer {
  const { lower, headers } = head;
  let named: Set<string> | null = null;
  let xff = '';
  let length: string | null = null;
  for (let i = 0; i < lower.length; i++) {
    const name = lower[i]!;
    if (name === 'connection') named = connectionTokens(named ? [...named, headers[2 * i + 1]!] : [headers[2 * i + 1]!]);
    else if (name === 'x-forwarded-for') xff = xff ? `${xff}, ${headers[2 * i + 1]}` : headers[2 * i + 1]!;
    else if (name === 'content-length') length = headers[2 * i + 1]!;
  }
  const w = headWriter;
  w.start(head.method);
  w.add(' ');
  w.add(info.target);
  w.add(' HTTP/1.1\r\n');
  for (let i = 0; i < lower.length; i++) {
    const name = lower[i]!;
    if (
      isHopByHop(name) ||
      name === 'x-forwarded-client-cert' ||
      name === 'x-forwarded-for' ||
      name === 'x-forwarded-proto' ||
      name === 'x-request-id' ||
      name === 'content-length' ||
      (named !== null && named.has(name))
    ) {
      continue;
    }
    w.field(headers[2 * i]!, name === 'host' ? info.host : headers[2 * i + 1]!);
  }
  w.add('x-forwarded-for: ');
  if (xff) {
    w.add(xff);
    w.add(', ');
  }
  w.add(info.clientAddr);
  w.add('\r\nx-forwarded-proto: https\r\n');
  w.field('x-request-id', info.requestId);
  if (info.xfcc !== null) w.field('x-forwarded-client-cert', info.xfcc);
  // framing re-declared in canonical form: "010" means ten, and no origin may read it as octal
  // (HTTP Garden server bug 32). llhttp refused duplicates, non-digits and Content-Length with
  // chunked; the digits are kept as a string (a Number would round lengths above 2^53).
  if (head.chunked) w.add('transfer-encoding: chunked\r\n');
  else if (length !== null) w.field('content-length', canonicalDigits(length));
  if (head.versionMinor === 0 && !lower.includes('host')) w.field('host', info.host);
  if (info.upgrade !== null) {
    w.field('upgrade', info.upgrade);
    w.add('connection: upgrade\r\n');
  }
  w.add('\r\n');
  return w.take();
}
