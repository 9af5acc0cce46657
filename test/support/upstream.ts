// A real mTLS origin for tests: node:https requiring a client certificate from the test CA.
// It records what it saw (method, url, headers, body sha256, the client cert) so tests can
// assert on what the proxy forwarded, and counts TCP connections (keep-alive reuse).
import { createHash } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { TestPki } from './pki.ts';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  bodyLength: number;
  sha256: string;
  peerCN: string | null;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer | null) => void;

export interface TestUpstream {
  port: number;
  seen: SeenRequest[];
  connections: number;
  sockets: Set<Socket>;
  /** Route-specific handlers; the default echoes a JSON summary of the request. */
  handlers: Map<string, Handler>;
  server: https.Server;
  close(): Promise<void>;
}

export function echo(req: IncomingMessage, res: ServerResponse, seen: SeenRequest): void {
  const body = JSON.stringify({ method: seen.method, url: seen.url, headers: seen.headers, bodyLength: seen.bodyLength, sha256: seen.sha256, peerCN: seen.peerCN });
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** A deterministic pseudo-random block, repeated: big downloads without big memory. */
export const PATTERN = createHash('sha512').update('mtls-proxy').digest().toString('hex').repeat(1024).slice(0, 65536);

export async function startUpstream(pki: TestPki, opts: { keepAliveTimeout?: number; collectBodies?: boolean } = {}): Promise<TestUpstream> {
  const seen: SeenRequest[] = [];
  const handlers = new Map<string, Handler>();
  const sockets = new Set<Socket>();
  const state = { connections: 0 };
  const server = https.createServer(
    { cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true, keepAliveTimeout: opts.keepAliveTimeout ?? 5000 },
    (req, res) => {
      const hash = createHash('sha256');
      let length = 0;
      req.on('data', (d: Buffer) => {
        hash.update(d);
        length += d.length;
      });
      req.on('end', () => {
        const cert = (req.socket as TLSSocket).getPeerCertificate();
        const s: SeenRequest = {
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          rawHeaders: req.rawHeaders,
          bodyLength: length,
          sha256: hash.digest('hex'),
          peerCN: cert && typeof cert.subject?.CN === 'string' ? cert.subject.CN : null,
        };
        seen.push(s);
        const path = (req.url ?? '/').split('?')[0]!;
        const h = handlers.get(path);
        if (h) h(req, res, null);
        else echo(req, res, s);
      });
    },
  );
  // set on the server, not only in the options: and no extra grace, so idle sockets close on time
  server.keepAliveTimeout = opts.keepAliveTimeout ?? 5000;
  (server as unknown as { keepAliveTimeoutBuffer?: number }).keepAliveTimeoutBuffer = 0;
  server.on('secureConnection', (s: TLSSocket) => {
    state.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    seen,
    get connections() {
      return state.connections;
    },
    sockets,
    handlers,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Streams `size` bytes of PATTERN with a Content-Length (or chunked when `chunked`). */
export function download(size: number, chunked = false): Handler {
  return (_req, res) => {
    res.writeHead(200, chunked ? { 'content-type': 'application/octet-stream' } : { 'content-type': 'application/octet-stream', 'content-length': size });
    const block = Buffer.from(PATTERN, 'latin1');
    let left = size;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, block.length);
        left -= n;
        const ok = res.write(n === block.length ? block : block.subarray(0, n));
        if (!ok) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  };
}

/** sha256 of `size` bytes of PATTERN, as a download() sends them. */
export function patternSha256(size: number): string {
  const block = Buffer.from(PATTERN, 'latin1');
  const h = createHash('sha256');
  let left = size;
  while (left > 0) {
    const n = Math.min(left, block.length);
    h.update(n === block.length ? block : block.subarray(0, n));
    left -= n;
  }
  return h.digest('hex');
}
