// `mtls-proxy demo` (`npm start`): the embedded default. A throwaway PKI made in-process,
// a built-in mTLS echo upstream, the proxy in front of it (an HTTP listener and an L4
// tunnel), and curl commands that work when pasted: with the client certificate, and
// without it to show the refusal.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import bcrypt from 'bcrypt';
import https from 'node:https';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { configFromObject } from './config/load.ts';
import { createDevPki } from './pki/dev-pki.ts';
import { installSignals, ProxyServer, formatAddress } from './server.ts';

export interface DemoOptions {
  /** Preferred proxy ports; a busy port falls back to any free one. */
  httpPort?: number;
  tcpPort?: number;
  adminPort?: number;
  /** Write the banner here (default stdout). */
  out?: (s: string) => void;
  /** Install signal handlers (default true; tests pass false and stop it themselves). */
  signals?: boolean;
  logLevel?: 'info' | 'warn' | 'silent';
}

export interface Demo {
  server: ProxyServer;
  dir: string;
  httpPort: number;
  tcpPort: number;
  adminPort: number;
  /** The admin password made for this run (printed once). */
  adminPassword: string;
  curl: { withCert: string; withoutCert: string; tunnel: string; admin: string };
  stop(): Promise<void>;
}

async function freePort(preferred: number): Promise<number> {
  return new Promise((resolve) => {
    const probe = createNetServer();
    probe.once('error', () => resolve(0));
    probe.listen(preferred, '127.0.0.1', () => probe.close(() => resolve(preferred)));
  });
}

function startEchoUpstream(pki: Awaited<ReturnType<typeof createDevPki>>): Promise<https.Server> {
  const server = https.createServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    let bytes = 0;
    req.on('data', (d: Buffer) => (bytes += d.length));
    req.on('end', () => {
      const peer = (req.socket as TLSSocket).getPeerCertificate();
      const body =
        JSON.stringify(
          {
            upstream: 'mtls-proxy demo echo',
            method: req.method,
            url: req.url,
            body_bytes: bytes,
            proxy_client_cert: peer?.subject?.CN ?? null,
            headers: {
              'x-forwarded-client-cert': req.headers['x-forwarded-client-cert'] ?? null,
              'x-forwarded-for': req.headers['x-forwarded-for'] ?? null,
              'x-forwarded-proto': req.headers['x-forwarded-proto'] ?? null,
              'x-request-id': req.headers['x-request-id'] ?? null,
            },
          },
          null,
          2,
        ) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

export async function startDemo(opts: DemoOptions = {}): Promise<Demo> {
  const out = opts.out ?? ((s: string) => process.stdout.write(s));
  const dir = mkdtempSync(join(tmpdir(), 'mtls-proxy-demo-'));
  const pki = await createDevPki();
  const write = (name: string, pem: string): string => {
    const p = join(dir, name);
    writeFileSync(p, pem, { mode: 0o600 });
    return p;
  };
  write('ca.pem', pki.ca.cert);
  write('server.pem', pki.server.cert);
  write('server-key.pem', pki.server.key);
  write('client.pem', pki.client.cert);
  write('client-key.pem', pki.client.key);
  write('proxy.pem', pki.proxy.cert);
  write('proxy-key.pem', pki.proxy.key);
  const upstream = await startEchoUpstream(pki);
  const upPort = (upstream.address() as AddressInfo).port;
  const httpPort = await freePort(opts.httpPort ?? 8443);
  const tcpPort = await freePort(opts.tcpPort ?? 8444);
  const adminPort = await freePort(opts.adminPort ?? 9901);
  // a fresh password per run, never a default one: the admin API can reload certificates
  const adminPassword = randomBytes(12).toString('base64url');
  const passwordHash = await bcrypt.hash(adminPassword, 10);
  const tls = { cert: 'server.pem', key: 'server-key.pem', client_ca: 'ca.pem', client_auth: 'require', allow: ['URI=spiffe://demo/*'] };
  const config = configFromObject(
    {
      log: { level: opts.logLevel ?? 'info', format: 'json' },
      server: { drain_timeout: '5s' },
      admin: { address: `127.0.0.1:${adminPort}`, username: 'admin', password_hash: passwordHash },
      request_log: { path: 'requests.sqlite', retention: '1d' },
      listeners: {
        edge: { address: `127.0.0.1:${httpPort}`, mode: 'http', upstream: 'echo', tls },
        tunnel: { address: `127.0.0.1:${tcpPort}`, mode: 'tcp', upstream: 'echo', tls },
      },
      upstreams: {
        echo: {
          endpoints: [`127.0.0.1:${upPort}`],
          tls: { cert: 'proxy.pem', key: 'proxy-key.pem', ca: 'ca.pem', server_name: 'localhost' },
          health_check: { path: '/healthz', interval: '5s' },
        },
      },
    },
    { baseDir: dir, source: null },
  );
  const server = new ProxyServer(config);
  await server.start();
  const edge = server.listenerAddress('edge');
  const tunnel = server.listenerAddress('tunnel');
  const admin = server.adminAddress()!;
  const q = (p: string): string => (/\s/.test(p) ? `'${p}'` : p);
  const certArgs = `--cacert ${q(join(dir, 'ca.pem'))} --cert ${q(join(dir, 'client.pem'))} --key ${q(join(dir, 'client-key.pem'))}`;
  const curl = {
    withCert: `curl ${certArgs} https://localhost:${edge.port}/hello`,
    withoutCert: `curl --cacert ${q(join(dir, 'ca.pem'))} https://localhost:${edge.port}/hello`,
    tunnel: `curl ${certArgs} https://localhost:${tunnel.port}/through-the-tunnel`,
    admin: `curl -u admin:${adminPassword} http://127.0.0.1:${admin.port}/api/requests?limit=5`,
  };
  out(
    [
      '',
      'mtls-proxy demo is running (a throwaway PKI; nothing here is for production).',
      `  files:     ${dir}`,
      `  upstream:  built-in mTLS echo server on 127.0.0.1:${upPort} (it requires the proxy's client certificate)`,
      `  http:      https://localhost:${edge.port}  (L7: parses, adds X-Forwarded-Client-Cert, X-Request-Id)`,
      `  tcp:       ${formatAddress(tunnel)}  (L4 tunnel: TLS terminated, bytes re-encrypted toward the upstream)`,
      `  admin:     http://127.0.0.1:${admin.port}/  user admin, password ${adminPassword}  (dashboard, API, /metrics)`,
      '',
      'With the client certificate (answers 200 with what the upstream saw):',
      `  ${curl.withCert}`,
      '',
      'Without a client certificate (refused in the TLS handshake):',
      `  ${curl.withoutCert}`,
      '',
      'Through the L4 tunnel (the upstream itself answers):',
      `  ${curl.tunnel}`,
      '',
      'The request log, through the admin API (or open the dashboard in a browser):',
      `  ${curl.admin}`,
      '',
      'Ctrl-C (SIGINT) or SIGTERM drains and stops; SIGHUP reloads certificates.',
      '',
    ].join('\n'),
  );
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await server.shutdown();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
    upstream.closeAllConnections();
    rmSync(dir, { recursive: true, force: true });
  };
  return { server, dir, httpPort: edge.port, tcpPort: tunnel.port, adminPort: admin.port, adminPassword, curl, stop };
}

export async function runDemo(opts: DemoOptions = {}): Promise<void> {
  const demo = await startDemo(opts);
  if (opts.signals !== false) {
    process.once('exit', () => rmSync(demo.dir, { recursive: true, force: true }));
    installSignals(demo.server);
  }
}
