// Starts a real ProxyServer (real TLS listener, real pools) in front of a test upstream.
import https from 'node:https';
import tls from 'node:tls';
import { configFromObject } from '../../src/config/load.ts';
import type { RequestRecord } from '../../src/http/context.ts';
import { silentLogger } from '../../src/log.ts';
import { ProxyServer } from '../../src/server.ts';
import type { TestPki } from './pki.ts';

export interface ProxyOptions {
  listener?: Record<string, unknown>;
  limits?: Record<string, unknown>;
  tls?: Record<string, unknown>;
  upstream?: Record<string, unknown>;
  upstreams?: Record<string, unknown>;
  server?: Record<string, unknown>;
  endpoints?: string[];
}

export interface TestProxy {
  server: ProxyServer;
  port: number;
  records: RequestRecord[];
  stop(): Promise<void>;
}

export async function startProxy(pki: TestPki, upstreamPort: number, opts: ProxyOptions = {}): Promise<TestProxy> {
  const config = configFromObject(
    {
      log: { level: 'silent' },
      server: { drain_timeout: '5s', ...opts.server },
      listeners: {
        edge: {
          address: '127.0.0.1:0',
          upstream: 'backend',
          ...opts.listener,
          tls: { cert: pki.file('server.pem', pki.server.cert), key: pki.file('server-key.pem', pki.server.key), client_ca: pki.file('ca.pem', pki.ca.cert), client_auth: 'optional', ...opts.tls },
          limits: { header_timeout: '5s', ...opts.limits },
        },
      },
      upstreams: {
        backend: {
          endpoints: opts.endpoints ?? [`127.0.0.1:${upstreamPort}`],
          tls: { cert: pki.file('proxy.pem', pki.proxyClient.cert), key: pki.file('proxy-key.pem', pki.proxyClient.key), ca: pki.file('ca.pem', pki.ca.cert), server_name: 'localhost' },
          ...opts.upstream,
        },
        ...opts.upstreams,
      },
    },
    { baseDir: pki.dir },
  );
  const server = new ProxyServer(config, { logger: silentLogger, logRequests: false });
  const records: RequestRecord[] = [];
  server.onRequest((r) => records.push(r));
  await server.start();
  return { server, port: server.listenerAddress('edge').port, records, stop: () => server.shutdown() };
}

/** An https.Agent presenting the test client certificate. */
export function clientAgent(pki: TestPki, keepAlive = true): https.Agent {
  return new https.Agent({ keepAlive, ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key, servername: 'localhost' } as https.AgentOptions);
}

export interface Response {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export function request(port: number, agent: https.Agent, method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const r = https.request({ host: '127.0.0.1', port, method, path, agent, servername: 'localhost', headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    r.on('error', reject);
    r.end(body);
  });
}

/**
 * Raw TLS: send exact bytes, collect everything until the server closes (or `waitMs`).
 * For framing and smuggling cases where a real client would refuse to send the bytes.
 */
export function rawExchange(port: number, pki: TestPki, bytes: string | Buffer, waitMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key });
    const parts: Buffer[] = [];
    const timer = setTimeout(() => s.destroy(), waitMs);
    s.on('secureConnect', () => s.write(bytes));
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('error', (e) => {
      clearTimeout(timer);
      if (parts.length > 0) resolve(Buffer.concat(parts).toString('latin1'));
      else reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts).toString('latin1'));
    });
  });
}
