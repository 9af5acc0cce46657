// The proxy as its own process (`mtls-proxy start -c <file>`), for what only a process can
// show: signals, exit codes, and its own RSS (read from /proc, untouched by the test's memory).
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestPki } from './pki.ts';

const BIN = fileURLToPath(new URL('../../bin/mtls-proxy.js', import.meta.url));

export interface ChildProxy {
  child: ChildProcess;
  port: number;
  /** Everything the process wrote to stderr (its JSON log). */
  log(): string;
  exited: Promise<number | null>;
  /** VmRSS and VmHWM (peak) in bytes. */
  memory(): { rss: number; peak: number };
  stop(): Promise<number | null>;
}

export function writeConfig(pki: TestPki, upstreamPort: number, extra = ''): string {
  const cfg = `
[server]
drain_timeout = "5s"

[log]
level = "info"

[listeners.edge]
address = "127.0.0.1:0"
upstream = "backend"
  [listeners.edge.tls]
  cert = "server.pem"
  key = "server-key.pem"
  client_ca = "ca.pem"
  client_auth = "optional"

[upstreams.backend]
endpoints = ["127.0.0.1:${upstreamPort}"]
  [upstreams.backend.tls]
  cert = "proxy.pem"
  key = "proxy-key.pem"
  ca = "ca.pem"
  server_name = "localhost"
${extra}`;
  pki.file('server.pem', pki.server.cert);
  pki.file('server-key.pem', pki.server.key);
  pki.file('ca.pem', pki.ca.cert);
  pki.file('proxy.pem', pki.proxyClient.cert);
  pki.file('proxy-key.pem', pki.proxyClient.key);
  const path = join(pki.dir, 'mtls-proxy.toml');
  writeFileSync(path, cfg);
  return path;
}

/** `nodeFlags` go before the bin (`-r <preload>`, V8 flags); `bin`: another package's bin/mtls-proxy.js. */
export async function startChildProxy(configPath: string, nodeFlags: readonly string[] = [], bin = BIN): Promise<ChildProxy> {
  const child = spawn(process.execPath, ['--max-semi-space-size=1', ...nodeFlags, bin, 'start', '-c', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`proxy did not start:\n${err}`)), 15000);
    child.stderr!.on('data', (d: string) => {
      err += d;
      const m = /"address":"127\.0\.0\.1:(\d+)"/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void exited.then((code) => reject(new Error(`proxy exited ${code}:\n${err}`)));
  });
  const memory = (): { rss: number; peak: number } => {
    const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  };
  return {
    child,
    port,
    log: () => err,
    exited,
    memory,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
