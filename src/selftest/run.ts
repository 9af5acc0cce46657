// `mtls-proxy selftest -c <config>`: the config's first http listener (its limits and routes),
// on an ephemeral loopback port so it never clashes with a running instance, in front of a
// recording origin that every upstream the listener can reach is pointed at; the bundled corpus
// replayed through it; a pass/fail table.
//
// TLS material is a throwaway PKI made for the run, on both sides: the selftest client needs a
// certificate the listener accepts, and the origin a key for a name the proxy trusts, neither of
// which a config holds. So `tls.*` (files, allow-list, CRL) is not what is tested here (that is
// `mtls-proxy check`'s job); the HTTP layer is: parser, limits, routes, header rules, framing.
// Health checks are left off (their GETs would be origin traffic) and nothing is logged or
// written: no admin listener, no request log file.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config, ListenerConfig, UpstreamConfig } from '../config/types.ts';
import { ConfigError } from '../errors.ts';
import type { RequestRecord } from '../http/context.ts';
import { Router } from '../http/router.ts';
import { silentLogger } from '../log.ts';
import { createAuthority, issue } from '../pki/dev-pki.ts';
import { ProxyServer } from '../server.ts';
import { loadCorpus, type CorpusCase } from './corpus.ts';
import { RecordingOrigin } from './origin.ts';
import { replayCase, type CaseResult } from './replay.ts';

export interface SelftestOptions {
  /** Another corpus folder (tests). */
  corpusDir?: string;
  /** Only cases whose name contains this. */
  filter?: string;
  /** Called with each result as it is known. */
  onResult?: (r: CaseResult) => void;
}

export interface SelftestReport {
  listener: string;
  results: CaseResult[];
  passed: number;
  failed: number;
}

/** The listener the selftest exercises: the first in http mode. Throws ConfigError when there is none. */
export function selftestListener(config: Config): ListenerConfig {
  const l = config.listeners.find((x) => x.mode === 'http');
  if (l === undefined) throw new ConfigError('listeners', 'selftest needs a listener with mode = "http"; this config has none');
  return l;
}

export async function runSelftest(config: Config, opts: SelftestOptions = {}): Promise<SelftestReport> {
  const listener = selftestListener(config);
  let cases: CorpusCase[] = loadCorpus(opts.corpusDir);
  if (opts.filter) cases = cases.filter((c) => c.name.includes(opts.filter!));

  const dir = mkdtempSync(join(tmpdir(), 'mtls-proxy-selftest-'));
  const file = (name: string, pem: string): string => {
    const p = join(dir, name);
    writeFileSync(p, pem, { mode: 0o600 });
    return p;
  };
  let origin: RecordingOrigin | null = null;
  let server: ProxyServer | null = null;
  try {
    const ca = await createAuthority('mtls-proxy selftest CA', { days: 1 });
    const serverCert = await issue(ca, { cn: 'localhost', dns: ['localhost'], ips: ['127.0.0.1'], usage: ['server'], days: 1 });
    const client = await issue(ca, { cn: 'selftest-client', uris: ['spiffe://selftest/client'], usage: ['client'], days: 1 });
    const proxyClient = await issue(ca, { cn: 'selftest-proxy', usage: ['client'], days: 1 });
    origin = await RecordingOrigin.start({ cert: serverCert.cert, key: serverCert.key, ca: ca.cert });

    const caFile = file('ca.pem', ca.cert);
    const test: Config = selftestConfig(config, listener, {
      serverCert: file('server.pem', serverCert.cert),
      serverKey: file('server-key.pem', serverCert.key),
      ca: caFile,
      proxyCert: file('proxy.pem', proxyClient.cert),
      proxyKey: file('proxy-key.pem', proxyClient.key),
      originPort: origin.port,
    });
    server = new ProxyServer(test, { logger: silentLogger, logRequests: false, admin: false });
    const records: RequestRecord[] = [];
    server.onRequest((r) => records.push(r));
    await server.start();
    const running = server;
    const port = running.listenerAddress(listener.name).port;
    const env = {
      port,
      client: { ca: ca.cert, cert: client.cert, key: client.key, servername: 'localhost' },
      origin,
      limits: listener.limits,
      router: listener.routes.length > 0 ? new Router(listener.routes, listener.upstream) : null,
      records,
      openConnections: () => running.openConnections,
    };
    const results: CaseResult[] = [];
    for (const c of cases) {
      const r = await replayCase(c, env);
      results.push(r);
      opts.onResult?.(r);
    }
    const passed = results.filter((r) => r.pass).length;
    return { listener: listener.name, results, passed, failed: results.length - passed };
  } finally {
    if (server) await server.shutdown();
    if (origin) await origin.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface SelftestTls {
  serverCert: string;
  serverKey: string;
  ca: string;
  proxyCert: string;
  proxyKey: string;
  originPort: number;
}

/** The config as the selftest runs it: one listener, its upstreams all on the origin. */
export function selftestConfig(config: Config, listener: ListenerConfig, t: SelftestTls): Config {
  const names = new Set([listener.upstream, ...listener.routes.map((r) => r.upstream)]);
  const upstreams = new Map<string, UpstreamConfig>();
  for (const name of names) {
    const up = config.upstreams.get(name);
    if (up === undefined) throw new ConfigError(`listeners.${listener.name}.upstream`, `unknown upstream "${name}"`);
    upstreams.set(name, {
      ...up,
      endpoints: [{ host: '127.0.0.1', port: t.originPort }],
      tls: { cert: t.proxyCert, key: t.proxyKey, ca: t.ca, serverName: 'localhost', minVersion: up.tls.minVersion },
      healthCheck: null,
    });
  }
  return {
    source: config.source,
    server: { ...config.server, workers: 1 },
    admin: null,
    log: { level: 'silent', format: 'json' },
    requestLog: null,
    listeners: [
      {
        ...listener,
        address: { host: '127.0.0.1', port: 0 },
        tls: { ...listener.tls, cert: t.serverCert, key: t.serverKey, clientCa: t.ca, clientAuth: 'require', allow: [], crl: null },
      },
    ],
    upstreams,
  };
}

/** The pass/fail table, one row per case, then what failed and why. */
export function formatReport(report: SelftestReport): string {
  const rows = report.results.map((r) => [r.pass ? 'pass' : 'FAIL', r.family, r.name, r.expected, r.got]);
  const header = ['result', 'family', 'case', 'expected', 'got'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const out = [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
  const failed = report.results.filter((r) => !r.pass);
  if (failed.length > 0) {
    out.push('', 'failures:');
    for (const r of failed) for (const p of r.problems) out.push(`  ${r.name}: ${p}`);
  }
  out.push('', `${report.passed} passed, ${report.failed} failed (${report.results.length} cases, listener "${report.listener}")`);
  return `${out.join('\n')}\n`;
}
