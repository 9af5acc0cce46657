// `npm run bench`: mtls-proxy against direct connections to the origin and against four other
// proxies (a plain Node proxy, fastify + @fastify/reply-from, HAProxy, nginx), everything mutual
// TLS on loopback, one table of ratios from one run. See bench/README.md.
//
//   npm run bench [-- --with-native] [--workers N] [--targets a,b] [--scenarios s,t] [--loadgen wrk|node]
//
// Layout on a 2-core machine: every proxy on core 0 (taskset; all of them run for the whole
// bench, the ones not under test sit idle), the origin and the load generator on core 1. Each
// scenario runs against every target back to back. Writes bench/results/latest.{json,md}.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { createRequire } from 'node:module';
import { connect as connectTcp, createServer as createNetServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createDevPki } from '../src/pki/dev-pki.ts';
import { haproxy as haproxyPeer, haproxyPems, haproxyTcpRelay, nginx as nginxPeer, type NativePeer } from './peers/native.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH = join(ROOT, 'bench');
const NODE = process.execPath;
const SECONDS = Number(process.env.BENCH_SECONDS ?? '8');
const WARMUP_SECONDS = 1;
// Before anything is measured (idle RSS aside), every target serves BENCH_WARMUP_SECONDS of small
// requests at 50 connections, then as long at 1. The Node targets run JIT-compiled code: right
// after start, and still after 5 s at one connection, V8 was optimising (97 functions in the next
// 3 s, 20 deopts where Node's stream code first met both kinds of TLS socket), which on the one
// core every thread of a proxy shares put mtls-proxy's 1-connection p99 at 1.2-2.1 ms, against
// ~0.3 ms in later rounds (HAProxy: ~0.3 ms throughout). The bench measures steady state.
const WARMUP_ALL_SECONDS = Number(process.env.BENCH_WARMUP_SECONDS ?? '4');
const BULK_BYTES = 256 * 1024 * 1024;
const BULK_RUNS = Number(process.env.BENCH_BULK_RUNS ?? '2');
// Extra alternating rounds of small GET, 50 conns for mtls-proxy and mtls-proxy-obs: the ratio
// between two single runs swung from 0.71 to 0.94 on these machines (the same proxy ran 20.5k
// and 29k req/s minutes apart), so the observability target takes the median pair. Short
// rounds keep the two runs of a pair seconds apart, inside one phase of the machine.
const OBS_ROUNDS = Number(process.env.BENCH_OBS_ROUNDS ?? '10');
const OBS_SECONDS = Number(process.env.BENCH_OBS_SECONDS ?? '3');
// Then both side by side on the proxy core, each with its own wrk (25 connections), over the
// same seconds: the scheduler gives each half the core, so the ratio of their req/s is the
// ratio of their cost per request, measured under one and the same machine state. On these
// machines the alternating rounds above still spread from 0.66 to 1.24 within a minute; this
// is what the observability target is checked on (bench/tools/ab.sh is the same design).
const OBS_SIDE_ROUNDS = Number(process.env.BENCH_OBS_SIDE_ROUNDS ?? '6');
// The same design for the 1-connection latency check: mtls-proxy and HAProxy side by side on
// the proxy core, one connection each. Run alone, the p50s of the two (rounds a minute apart)
// moved by 20-40 µs with the VM's state (the proxy core sleeps between requests, and every
// wake-up is a halt and an interrupt on this VM); side by side both see the same state. The
// check's verdict stays on the rounds above; these are printed with it.
const LAT_SIDE_ROUNDS = Number(process.env.BENCH_LAT_SIDE_ROUNDS ?? '4');
// And for Connection: close: both proxies side by side, 25 new connections at a time each. Run
// alone, that scenario is bound by wrk's handshakes on core 1 as much as by the proxy, and its
// rounds read 1.74, 0.70 and 0.82x HAProxy within one run of unchanged code (bench/tools/ab.sh
// off haproxy with --close, minutes later: 1.03x in CPU per connection, ahead in all 4 rounds).
// Printed with the close check; its verdict stays on the rounds above.
const CLOSE_SIDE_ROUNDS = Number(process.env.BENCH_CLOSE_SIDE_ROUNDS ?? '4');
// Rounds for 1 connection and Connection: close (BENCH_ROUNDS, SECONDS split between them) and
// for the bulk scenarios (BENCH_BULK_RUNS, one timed transfer per round): the verdicts that
// swung between runs of the same code (close 0.91x -> 1.17x HAProxy, upload 0.55 -> 0.79 of
// direct, once because direct's best of five was one fast outlier). Each round runs every
// target once, in an order rotated per round, so no target's runs sit in one phase of the VM;
// the table shows each target's median round, and a target check takes the median of the
// per-round ratios, each from runs seconds apart.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? '3');
const OBS_SIDE_SECONDS = Number(process.env.BENCH_OBS_SIDE_SECONDS ?? '5');
const CONNS = 50;
const PROXY_CPU = '0';
const ORIGIN_CPU = '1';
const LOADGEN_CPU = '1';
const NCPU = cpus().length;
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const HAS_TASKSET = spawnSync('taskset', ['-V']).status === 0;

const { values: opts } = parseArgs({
  options: {
    'with-native': { type: 'boolean', default: false },
    workers: { type: 'string', default: process.env.BENCH_WORKERS ?? '' },
    targets: { type: 'string' },
    scenarios: { type: 'string' },
    loadgen: { type: 'string', default: process.env.BENCH_LOADGEN ?? 'wrk' },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  process.stdout.write(`npm run bench [-- options]
  --with-native        install wrk, HAProxy, nginx, gcc and libssl-dev with apt-get when missing
  --workers N          also run mtls-proxy with [server] workers = N (env BENCH_WORKERS)
  --targets a,b        only these targets (direct is always kept): ${['mtls-proxy', 'node-proxy', 'reply-from', 'haproxy', 'nginx', 'tcp-relay'].join(', ')}
  --scenarios a,b      only these scenarios: small-1, small-50, close, download, upload
  --loadgen wrk|node   small-request load generator (default wrk when usable; env BENCH_LOADGEN)
env: BENCH_SECONDS (default 8) per small-request scenario after 1 s of warm-up; 1 connection
     and Connection: close split it into BENCH_ROUNDS (default 3) rounds, each with its warm-up,
     BENCH_BULK_RUNS (default 2) rounds of one timed 256 MiB transfer per bulk scenario (a
     warm-up transfer before the first); a round runs every target once, the median is reported;
     BENCH_LAT_SIDE_ROUNDS (default 4) rounds of mtls-proxy and HAProxy side by side at 1 connection,
     BENCH_CLOSE_SIDE_ROUNDS (default 4) the same with Connection: close, 25 connections each,
     BENCH_WARMUP_SECONDS (default 4) of small requests at 50 and then 1 connection per target
     before anything is measured (idle RSS is taken before it)
`);
  process.exit(0);
}
const WORKERS = opts.workers === '' ? 0 : Number(opts.workers);
if (!Number.isFinite(SECONDS) || SECONDS <= 0) throw new Error(`BENCH_SECONDS must be a positive number, got ${process.env.BENCH_SECONDS}`);
if (!Number.isInteger(WARMUP_ALL_SECONDS) || WARMUP_ALL_SECONDS < 0) throw new Error(`BENCH_WARMUP_SECONDS must be a whole number of seconds (0: none), got ${process.env.BENCH_WARMUP_SECONDS}`);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`BENCH_ROUNDS must be a positive integer, got ${process.env.BENCH_ROUNDS}`);
if (!Number.isInteger(BULK_RUNS) || BULK_RUNS < 1) throw new Error(`BENCH_BULK_RUNS must be a positive integer, got ${process.env.BENCH_BULK_RUNS}`);
if (!Number.isInteger(WORKERS) || WORKERS < 0 || WORKERS === 1) throw new Error(`--workers must be a whole number of at least 2 (the main mtls-proxy target runs 1), got ${opts.workers}`);
if (opts.loadgen !== 'wrk' && opts.loadgen !== 'node') throw new Error(`--loadgen must be wrk or node, got ${opts.loadgen}`);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round1 = (n: number): number => Math.round(n * 10) / 10;

// ---- processes ---------------------------------------------------------------------------

interface Proc {
  name: string;
  child: ChildProcess;
  pid: number;
  out: string;
  err: string;
  exited: Promise<number | null>;
}

const running = new Set<Proc>();
/** The run's temp folder (PKI, configs, the wrk shim), removed on every way out. */
let tempDir: string | null = null;

/**
 * Starts `command args` pinned to `cpu` (taskset execs it, so the pid is the command's own), in
 * its own process group so stopping it also stops its children (nginx's worker, mtls-proxy's
 * workers).
 */
function start(name: string, cpu: string, command: string, args: string[], env?: NodeJS.ProcessEnv): Proc {
  const child = spawn(HAS_TASKSET ? 'taskset' : command, HAS_TASKSET ? ['-c', cpu, command, ...args] : args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: env ?? process.env,
  });
  if (child.pid === undefined) throw new Error(`${name}: spawn failed`);
  const proc: Proc = {
    name,
    child,
    pid: child.pid,
    out: '',
    err: '',
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null)))),
  };
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (proc.out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (proc.err += d));
  running.add(proc);
  void proc.exited.then(() => running.delete(proc));
  return proc;
}

const startNode = (name: string, cpu: string, args: string[]): Proc => start(name, cpu, NODE, args);

const isRunning = (proc: Proc): boolean => proc.child.exitCode === null && proc.child.signalCode === null;

/** Resolves with the first match of `re` in the process's stdout+stderr. */
function waitFor(proc: Proc, re: RegExp, ms = 15_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      const m = re.exec(proc.out) ?? re.exec(proc.err);
      if (m) {
        clearInterval(poll);
        clearTimeout(timer);
        resolve(m);
      }
    };
    const poll = setInterval(check, 20);
    const timer = setTimeout(() => {
      clearInterval(poll);
      reject(new Error(`${proc.name} not ready after ${ms} ms:\n${proc.err.slice(-2000)}`));
    }, ms);
    void proc.exited.then((code) => {
      clearInterval(poll);
      clearTimeout(timer);
      reject(new Error(`${proc.name} exited (${code}) before it was ready:\n${proc.err.slice(-2000)}`));
    });
    check();
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls until a TCP connect to the port succeeds (the process has bound its listener). */
async function waitListening(proc: Proc, port: number, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (!isRunning(proc)) throw new Error(`${proc.name} exited (${proc.child.exitCode}) before it was ready:\n${(proc.err || proc.out).slice(-2000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connectTcp(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${proc.name} not listening on ${port} after ${ms} ms:\n${proc.err.slice(-2000)}`);
    await sleep(50);
  }
}

function killGroup(proc: Proc, signal: NodeJS.Signals): void {
  try {
    process.kill(-proc.pid, signal);
  } catch {
    // the group is gone
  }
}

async function stop(proc: Proc): Promise<void> {
  if (isRunning(proc)) {
    killGroup(proc, 'SIGTERM');
    const t = setTimeout(() => killGroup(proc, 'SIGKILL'), 5000);
    await proc.exited;
    clearTimeout(t);
  }
  // Children that outlived their parent (they should not).
  killGroup(proc, 'SIGKILL');
}

function killAll(): void {
  for (const p of running) killGroup(p, 'SIGKILL');
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    process.stderr.write(`\n${sig}: stopping ${running.size} process(es)\n`);
    killAll();
    if (tempDir) rmSync(tempDir, { recursive: true, force: true });
    process.exit(130);
  });
}

/** Runs a command to completion, pinned to `cpu`; resolves with its stdout. */
async function runPinned(name: string, cpu: string, command: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ out: string; err: string; code: number | null }> {
  const p = start(name, cpu, command, args, env);
  const code = await p.exited;
  return { out: p.out, err: p.err, code };
}

// ---- /proc -------------------------------------------------------------------------------

interface ProcStat {
  comm: string;
  ppid: number;
  /** utime + stime, seconds */
  cpu: number;
}

/** Every process's parent and CPU time, from /proc/<pid>/stat. */
function snapshot(): Map<number, ProcStat> {
  const out = new Map<number, ProcStat>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // After "pid (comm) ": state is field 3, ppid 4, utime 14, stime 15 (proc(5)).
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      out.set(Number(name), { comm, ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK });
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** The pid and all its descendants in a snapshot. */
function tree(snap: Map<number, ProcStat>, root: number): number[] {
  const pids = [root];
  for (let i = 0; i < pids.length; i++) {
    for (const [pid, s] of snap) if (s.ppid === pids[i]) pids.push(pid);
  }
  return pids.filter((p) => snap.has(p));
}

/** Steal time of the whole machine, seconds (/proc/stat): CPU the hypervisor gave to someone else. */
function stealSeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  return Number(line.trim().split(/\s+/)[8] ?? 0) / CLK_TCK;
}

interface Memory {
  rss: number;
  hwm: number;
}

function memoryOf(pid: number): Memory {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return { rss: 0, hwm: 0 };
  }
}

/** RSS and peak RSS (VmHWM) summed over a process and its descendants. */
function treeMemory(root: number): Memory & { processes: number } {
  const pids = tree(snapshot(), root);
  const m = pids.map(memoryOf);
  return { rss: m.reduce((s, x) => s + x.rss, 0), hwm: m.reduce((s, x) => s + x.hwm, 0), processes: pids.length };
}

/** Resets VmHWM to the current RSS (proc(5), clear_refs "5") for a process tree. */
function resetPeak(root: number): boolean {
  let ok = true;
  for (const pid of tree(snapshot(), root)) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      ok = false;
    }
  }
  return ok;
}

// ---- tools: wrk (with the client-certificate shim), HAProxy, nginx ------------------------

const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;

/** Notes on what was installed, built, or left out, for the report. */
const setupNotes: string[] = [];

/** `--with-native`: apt-get install whatever of wrk, HAProxy, nginx, gcc, libssl-dev is missing. */
function installNative(): void {
  const want: Array<[string, string]> = [
    ['wrk', 'wrk'],
    ['haproxy', 'haproxy'],
    ['nginx', 'nginx-light'],
    ['gcc', 'gcc'],
  ];
  const missing = want.filter(([cmd]) => !has(cmd)).map(([, pkg]) => pkg);
  if (!existsSync('/usr/include/openssl/ssl.h')) missing.push('libssl-dev');
  if (missing.length && !existsSync('/usr/include/stdio.h')) missing.push('libc6-dev');
  if (!missing.length) return;
  process.stderr.write(`bench: --with-native: apt-get install ${missing.join(' ')}\n`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const update = spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  const install = update.status === 0 ? spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], { stdio: ['ignore', 'ignore', 'inherit'], env }) : update;
  if (install.status !== 0) setupNotes.push(`--with-native: apt-get install ${missing.join(' ')} failed (exit ${install.status}; root needed): the peers and tools still missing are skipped`);
  else setupNotes.push(`--with-native: installed ${missing.join(' ')} with apt-get`);
}

/**
 * wrk presents no client certificate and resumes TLS sessions on reconnect: the LD_PRELOAD shim
 * bench/tools/wrk-client-cert.c fixes both. Returns the shim's path, or null (with a note)
 * when wrk or the compiler is missing.
 */
function buildWrkShim(dir: string): string | null {
  if (opts.loadgen !== 'wrk') {
    setupNotes.push('small-request load generator: bench/loadgen.ts (--loadgen node)');
    return null;
  }
  const why = !has('wrk') ? 'wrk is not installed' : !has('gcc') ? 'gcc is not installed' : !existsSync('/usr/include/openssl/ssl.h') ? 'libssl-dev is not installed' : null;
  if (why) {
    setupNotes.push(`small-request load generator: bench/loadgen.ts, not wrk (${why}; \`npm run bench -- --with-native\` installs it). The Node loadgen costs ~2x wrk's CPU per request on core 1, so the fastest peers' small-request numbers are capped lower`);
    return null;
  }
  const so = join(dir, 'wrk-client-cert.so');
  const r = spawnSync('gcc', ['-O2', '-shared', '-fPIC', '-o', so, join(BENCH, 'tools', 'wrk-client-cert.c'), '-ldl', '-lssl', '-lcrypto'], { encoding: 'utf8' });
  if (r.status !== 0) {
    setupNotes.push(`small-request load generator: bench/loadgen.ts, not wrk (building bench/tools/wrk-client-cert.c failed: ${r.stderr.trim().slice(0, 300)})`);
    return null;
  }
  return so;
}

// ---- the origin's view -------------------------------------------------------------------

interface OriginStats {
  connections: number;
  resumed: number;
  tls: Record<string, number>;
  requests: number;
  bad_requests: number;
  tls_errors: number;
}

function originStats(dir: string, port: number): Promise<OriginStats> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: '/__stats',
        servername: 'localhost',
        agent: false,
        ca: readFileSync(join(dir, 'ca.pem')),
        cert: readFileSync(join(dir, 'client.pem')),
        key: readFileSync(join(dir, 'client-key.pem')),
        headers: { connection: 'close' },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (d: string) => (body += d));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body) as OriginStats);
          } catch (err) {
            reject(err as Error);
          }
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function statsDelta(a: OriginStats, b: OriginStats): OriginStats {
  const tls: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.tls)) {
    const d = v - (a.tls[k] ?? 0);
    if (d) tls[k] = d;
  }
  return {
    connections: b.connections - a.connections,
    resumed: b.resumed - a.resumed,
    tls,
    requests: b.requests - a.requests,
    bad_requests: b.bad_requests - a.bad_requests,
    tls_errors: b.tls_errors - a.tls_errors,
  };
}

// ---- targets -----------------------------------------------------------------------------

type TargetName = string;
type ScenarioName = 'small-1' | 'small-50' | 'close' | 'download' | 'upload';
const ALL_SCENARIOS: ScenarioName[] = ['small-1', 'small-50', 'close', 'download', 'upload'];
/** The main table's columns, in order; `mtls-proxy-wN` (--workers) is reported on its own. */
const PEERS = ['direct', 'mtls-proxy', 'node-proxy', 'reply-from', 'haproxy', 'nginx', 'tcp-relay'] as const;
/**
 * HAProxy in `mode tcp` on the proxy's core, TLS end to end: the bulk transfers' reference (see
 * haproxyTcpRelay in peers/native.ts). A column of the main table, no ratio against it.
 */
const RELAY = 'tcp-relay';
const WORKER_SCENARIOS: ScenarioName[] = ['small-50', 'close'];
/** mtls-proxy with metrics and the request log on (issue 3: what observability costs); reported on its own. */
const OBS = 'mtls-proxy-obs';
const OBS_SCENARIOS: ScenarioName[] = ['small-1', 'small-50'];

interface Live {
  port: number;
  proxy: Proc | null;
}

interface Target {
  name: TargetName;
  /** Why it is not measured, or null. */
  skip: string | null;
  scenarios: ScenarioName[];
  start: (dir: string, originPort: number) => Promise<Live>;
}

function mtlsProxyConfig(dir: string, name: string, port: number, originPort: number, workers: number, extra = ''): string {
  const path = join(dir, `${name}.toml`);
  writeFileSync(
    path,
    `# bench config: ${extra ? 'log level warn, with the admin listener (metrics) and the request log' : 'request logging off (level warn, no [request_log]), no admin listener'}
[server]
drain_timeout = "1s"
workers = ${workers}

[log]
level = "warn"

[listeners.edge]
address = "127.0.0.1:${port}"
upstream = "origin"
  [listeners.edge.tls]
  cert = "server.pem"
  key = "server-key.pem"
  client_ca = "ca.pem"
  client_auth = "require"

[upstreams.origin]
endpoints = ["127.0.0.1:${originPort}"]
  [upstreams.origin.tls]
  cert = "proxy.pem"
  key = "proxy-key.pem"
  ca = "ca.pem"
  server_name = "localhost"
${extra}`,
  );
  return path;
}

async function startMtlsProxy(dir: string, originPort: number, name: string, workers: number, cpu: string, observed = false): Promise<Live> {
  // At log level warn the "listening" line (info) is not written: pick the port here.
  const port = await freePort();
  let extra = '';
  if (observed) {
    // Issue 3's "observability on": Prometheus metrics (kept while [admin] is configured) and
    // the SQLite request log, a fresh file.
    const log = join(dir, `${name}.sqlite`);
    for (const suffix of ['', '-wal', '-shm']) rmSync(log + suffix, { force: true });
    extra = `\n[admin]\naddress = "127.0.0.1:${await freePort()}"\n\n[request_log]\npath = "${log}"\n`;
  }
  const cfg = mtlsProxyConfig(dir, name, port, originPort, workers, extra);
  // From dist/, as the published package runs (built once in main()): Node's type stripping of
  // the sources would add ~27 MiB to every RSS figure.
  const proxy = start(name, cpu, NODE, ['--max-semi-space-size=1', join(ROOT, 'bin', 'mtls-proxy.js'), 'start', '-c', cfg], { ...process.env, MTLS_PROXY_DIST: '1' });
  await waitListening(proxy, port);
  return { port, proxy };
}

async function startNodePeer(name: string, script: string, dir: string, originPort: number): Promise<Live> {
  const proxy = startNode(name, PROXY_CPU, [join(BENCH, 'peers', script), '--dir', dir, '--upstream', `127.0.0.1:${originPort}`]);
  const m = await waitFor(proxy, /\{"listening":(\d+)\}/);
  return { port: Number(m[1]), proxy };
}

async function startNative(name: string, make: (dir: string, port: number, originPort: number) => NativePeer, dir: string, originPort: number): Promise<Live> {
  const port = await freePort();
  const { command, args } = make(dir, port, originPort);
  const proxy = start(name, PROXY_CPU, command, args);
  await waitListening(proxy, port);
  return { port, proxy };
}

/** The first `n` cores, as a taskset list: where mtls-proxy with n workers may run. */
const workerCpus = (n: number): string => (Math.min(n, NCPU) <= 1 ? '0' : `0-${Math.min(n, NCPU) - 1}`);

function missingPackages(names: string[]): string[] {
  const req = createRequire(join(BENCH, 'peers', 'reply-from.ts'));
  return names.filter((n) => {
    try {
      req.resolve(n);
      return false;
    } catch {
      return true;
    }
  });
}

function targetsToRun(): Target[] {
  const small: ScenarioName[] = ['small-1', 'small-50', 'close'];
  const all = [...small, 'download', 'upload'] as ScenarioName[];
  const rfMissing = missingPackages(['fastify', '@fastify/reply-from']);
  const list: Target[] = [
    { name: 'direct', skip: null, scenarios: all, start: async (_dir, originPort) => ({ port: originPort, proxy: null }) },
    { name: 'mtls-proxy', skip: null, scenarios: all, start: (dir, o) => startMtlsProxy(dir, o, 'mtls-proxy', 1, PROXY_CPU) },
    { name: OBS, skip: null, scenarios: OBS_SCENARIOS, start: (dir, o) => startMtlsProxy(dir, o, OBS, 1, PROXY_CPU, true) },
  ];
  if (WORKERS) {
    list.push({
      name: `mtls-proxy-w${WORKERS}`,
      skip: null,
      scenarios: WORKER_SCENARIOS,
      start: (dir, o) => startMtlsProxy(dir, o, `mtls-proxy-w${WORKERS}`, WORKERS, workerCpus(WORKERS)),
    });
  }
  list.push(
    { name: 'node-proxy', skip: null, scenarios: all, start: (dir, o) => startNodePeer('node-proxy', 'node-proxy.ts', dir, o) },
    {
      name: 'reply-from',
      skip: rfMissing.length ? `${rfMissing.join(' and ')} not installed (they are devDependencies: npm install)` : null,
      scenarios: all,
      start: (dir, o) => startNodePeer('reply-from', 'reply-from.ts', dir, o),
    },
    {
      name: 'haproxy',
      skip: has('haproxy') ? null : 'haproxy not installed (npm run bench -- --with-native installs it)',
      scenarios: all,
      start: (dir, o) => startNative('haproxy', haproxyPeer, dir, o),
    },
    {
      name: 'nginx',
      skip: has('nginx') ? null : 'nginx not installed (npm run bench -- --with-native installs it)',
      scenarios: all,
      start: (dir, o) => startNative('nginx', nginxPeer, dir, o),
    },
    {
      name: RELAY,
      skip: has('haproxy') ? null : 'haproxy not installed (npm run bench -- --with-native installs it)',
      scenarios: ['download', 'upload'],
      start: (dir, o) => startNative(RELAY, haproxyTcpRelay, dir, o),
    },
  );
  const only = opts.targets?.split(',').map((s) => s.trim());
  const scen = opts.scenarios?.split(',').map((s) => s.trim()) as ScenarioName[] | undefined;
  for (const s of scen ?? []) if (!ALL_SCENARIOS.includes(s)) throw new Error(`unknown scenario ${s}`);
  return list
    .filter((t) => !only || t.name === 'direct' || only.includes(t.name) || (only.includes('mtls-proxy') && t.name.startsWith('mtls-proxy-')))
    .map((t) => ({ ...t, scenarios: scen ? t.scenarios.filter((s) => scen.includes(s)) : t.scenarios }));
}

// ---- load generation ---------------------------------------------------------------------

interface LoadgenOutput {
  tool: 'wrk' | 'node';
  mode: 'small' | 'download' | 'upload';
  connections?: number;
  close?: boolean;
  requests?: number;
  rps?: number;
  p50_us?: number;
  p99_us?: number;
  /** TLS handshakes the client completed in the measured run, how many resumed, and their kinds. */
  handshakes?: number;
  resumed?: number;
  tls?: Record<string, number>;
  best_mib_per_s?: number;
  mib_per_s?: number[];
  errors: number;
  error_samples: string[];
  /** The load generator's own CPU time over its run, % of one core. */
  loadgen_cpu_pct: number;
}

interface ScenarioResult {
  loadgen: LoadgenOutput;
  /** Length of the measured window, seconds. */
  wall_s: number;
  /** CPU of the proxy and all its processes over the window, in % of one core. */
  proxy_cpu_pct: number | null;
  /** Processes in the proxy's tree at the end of the window. */
  proxy_processes: number | null;
  /** Requests (or new connections) per second of proxy CPU time. */
  per_proxy_cpu_s: number | null;
  origin_cpu_pct: number;
  /** Busy CPU of everything else on the machine (other users, idle peers, kernel threads), % of one core. */
  other_cpu_pct: number;
  /** The biggest of those other processes. */
  other_top: Array<{ pid: number; comm: string; pct: number }>;
  /** Hypervisor steal time over the window, all cores together, % of one core. */
  steal_pct: number;
  /** Proxy RSS (all its processes) when the scenario started, and VmHWM (summed) during it, bytes. */
  proxy_rss_start: number | null;
  proxy_peak_rss: number | null;
  /** What the origin saw during the scenario (warm-up included): the proxy's upstream side. */
  origin: OriginStats;
}

interface TargetResult {
  skipped?: string;
  /** Each scenario's median round (see ROUNDS); every round is in `rounds`. */
  scenarios: Partial<Record<ScenarioName, ScenarioResult>>;
  /** Every round of a scenario, in round order (a round that failed is null). */
  rounds?: Partial<Record<ScenarioName, Array<ScenarioResult | null>>>;
  idle_rss: number | null;
  idle_processes: number | null;
  rss_after: number | null;
  peak_rss: number | null;
  proxy_log_tail?: string;
  /** Scenarios that threw (a load generator that failed, a proxy that died). */
  failures?: string[];
  /** mtls-proxy and mtls-proxy-obs: small GET, 50 conns again, in alternating rounds after the scenarios (BENCH_OBS_ROUNDS). */
  obs_rounds?: Array<{ rps: number | null; per_proxy_cpu_s: number | null }>;
  /** mtls-proxy-obs only: side-by-side rounds with mtls-proxy (BENCH_OBS_SIDE_ROUNDS). */
  obs_side?: SideRound[];
  /** haproxy only: 1-connection side-by-side rounds with mtls-proxy (BENCH_LAT_SIDE_ROUNDS). */
  lat_side?: LatRound[];
  /** haproxy only: Connection: close side-by-side rounds with mtls-proxy (BENCH_CLOSE_SIDE_ROUNDS). */
  close_side?: CloseRound[];
}

/** One Connection: close side-by-side round of mtls-proxy and HAProxy (25 connections each). */
interface CloseRound {
  mtls_cps: number;
  haproxy_cps: number;
  /** Proxy CPU µs per new connection (and its one request), from /proc over the round. */
  mtls_cpu_us: number | null;
  haproxy_cpu_us: number | null;
}

/** One 1-connection side-by-side round of mtls-proxy and HAProxy. */
interface LatRound {
  mtls_p50_us: number;
  haproxy_p50_us: number;
  mtls_rps: number;
  haproxy_rps: number;
  mtls_cpu_us: number | null;
  haproxy_cpu_us: number | null;
}

/** One side-by-side round: both proxies on the proxy core at once, each with its own wrk. */
interface SideRound {
  plain_rps: number;
  obs_rps: number;
  /** Proxy CPU µs per request, from /proc over the round. */
  plain_cpu_us: number | null;
  obs_cpu_us: number | null;
}

type Results = Record<TargetName, TargetResult>;

const WRK_LUA = `-- written by bench/run.ts: the summary as one JSON line
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\\n',
    s.requests, s.duration, s.bytes, latency:percentile(50), latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
`;

interface WrkSummary {
  requests: number;
  duration_us: number;
  p50_us: number;
  p99_us: number;
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
}

async function wrk(dir: string, shim: string, port: number, conns: number, close: boolean, seconds: number, statsName = 'wrk-tls.json'): Promise<LoadgenOutput> {
  const statsFile = join(dir, statsName);
  rmSync(statsFile, { force: true });
  const env = { ...process.env, LD_PRELOAD: shim, WRK_CLIENT_CERT: join(dir, 'client.pem'), WRK_CLIENT_KEY: join(dir, 'client-key.pem'), WRK_TLS_STATS: statsFile };
  const args = ['-t1', `-c${conns}`, `-d${seconds}s`, '--timeout', '10s', '-s', join(dir, 'wrk.lua'), ...(close ? ['-H', 'Connection: close'] : []), `https://localhost:${port}/small`];
  const r = await runPinned('wrk', LOADGEN_CPU, 'wrk', args, env);
  const m = /WRKJSON (\{.*\})/.exec(r.out);
  if (r.code !== 0 || !m?.[1]) throw new Error(`wrk exited ${r.code}:\n${(r.err || r.out).slice(-2000)}`);
  const s = JSON.parse(m[1]) as WrkSummary;
  const tls = existsSync(statsFile) ? (JSON.parse(readFileSync(statsFile, 'utf8')) as { handshakes: number; resumed: number; tls: Record<string, number>; cpu_s: number }) : null;
  const errs = (['connect', 'read', 'write', 'status', 'timeout'] as const).filter((k) => s[k] > 0);
  const durationS = s.duration_us / 1e6;
  return {
    tool: 'wrk',
    mode: 'small',
    connections: conns,
    close,
    requests: s.requests,
    rps: Math.round(s.requests / durationS),
    p50_us: s.p50_us,
    p99_us: s.p99_us,
    handshakes: tls?.handshakes ?? 0,
    resumed: tls?.resumed ?? 0,
    tls: tls?.tls ?? {},
    errors: errs.reduce((n, k) => n + s[k], 0),
    error_samples: errs.map((k) => `${k} errors: ${s[k]}${k === 'status' ? ' (HTTP status >= 400)' : ''}`),
    loadgen_cpu_pct: tls ? round1((tls.cpu_s / durationS) * 100) : NaN,
  };
}

/**
 * Two proxies under wrk at once, `conns` connections each, after a second of warm-up: each
 * one's wrk summary and proxy CPU µs per request (from /proc over the same seconds).
 */
async function sideBySide(dir: string, shim: string | null, x: Live, y: Live, origin: Proc, conns: number, close = false): Promise<Array<{ lg: LoadgenOutput; cpuUs: number | null }>> {
  if (!shim) throw new Error('side-by-side rounds need wrk');
  await Promise.all([wrk(dir, shim, x.port, conns, close, WARMUP_SECONDS, 'wrk-a.json'), wrk(dir, shim, y.port, conns, close, WARMUP_SECONDS, 'wrk-b.json')]);
  const b = [sample(origin, x.proxy, []), sample(origin, y.proxy, [])];
  const lgs = await Promise.all([wrk(dir, shim, x.port, conns, close, OBS_SIDE_SECONDS, 'wrk-a.json'), wrk(dir, shim, y.port, conns, close, OBS_SIDE_SECONDS, 'wrk-b.json')]);
  const e = [sample(origin, x.proxy, []), sample(origin, y.proxy, [])];
  if (!lgs[0]!.rps || !lgs[1]!.rps) throw new Error('a side-by-side round served no requests');
  return lgs.map((lg, i) => ({ lg, cpuUs: lg.requests ? round1(((e[i]!.proxy - b[i]!.proxy) * 1e6) / lg.requests) : null }));
}

function nodeLoadgenArgs(dir: string, port: number, scenario: ScenarioName, seconds: number, round: number): string[] {
  const base = [join(BENCH, 'loadgen.ts'), '--dir', dir, '--port', String(port)];
  switch (scenario) {
    case 'small-1':
    case 'small-50':
    case 'close':
      return [...base, '--mode', 'small', '--connections', scenario === 'small-1' ? '1' : String(CONNS), ...(scenario === 'close' ? ['--close'] : []), '--seconds', String(seconds), '--warmup', String(WARMUP_SECONDS)];
    case 'download':
    case 'upload':
      return [...base, '--mode', scenario, '--bytes', String(BULK_BYTES), '--runs', '1', '--warmup-runs', round === 0 ? '1' : '0'];
  }
}

interface Sample {
  t: number;
  proxy: number;
  processes: number;
  origin: number;
  steal: number;
  other: Map<number, { comm: string; cpu: number }>;
}

function sample(origin: Proc, proxy: Proc | null, exclude: number[]): Sample {
  const snap = snapshot();
  const proxyPids = proxy ? tree(snap, proxy.pid) : [];
  const ours = new Set([process.pid, origin.pid, ...proxyPids, ...exclude]);
  const other = new Map<number, { comm: string; cpu: number }>();
  for (const [pid, s] of snap) if (!ours.has(pid)) other.set(pid, { comm: s.comm, cpu: s.cpu });
  return {
    t: performance.now(),
    proxy: proxyPids.reduce((sum, p) => sum + (snap.get(p)?.cpu ?? 0), 0),
    processes: proxyPids.length,
    origin: snap.get(origin.pid)?.cpu ?? 0,
    steal: stealSeconds(),
    other,
  };
}

/** A process for the notes: one of ours by name (an idle peer), or its command line. */
function describe(pid: number, comm: string): string {
  for (const p of running) if (p.pid === pid) return `bench's idle ${p.name}`;
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
    return cmd ? cmd.slice(0, 80) : comm;
  } catch {
    return comm;
  }
}

async function runScenario(dir: string, shim: string | null, live: Live, scenario: ScenarioName, origin: Proc, originPort: number, seconds = SECONDS, round = 0): Promise<ScenarioResult> {
  const proxy = live.proxy;
  const before = await originStats(dir, originPort);
  const peakReset = proxy ? resetPeak(proxy.pid) : false;
  const rssStart = proxy ? treeMemory(proxy.pid).rss : null;
  let b: Sample | null = null;
  let e: Sample | null = null;
  let loadgen: LoadgenOutput;
  const small = scenario !== 'download' && scenario !== 'upload';
  if (small && shim) {
    const conns = scenario === 'small-1' ? 1 : CONNS;
    const close = scenario === 'close';
    await wrk(dir, shim, live.port, conns, close, WARMUP_SECONDS);
    // wrk's pid is not known before it starts; it is on core 1 and counted from its own rusage.
    b = sample(origin, proxy, []);
    loadgen = await wrk(dir, shim, live.port, conns, close, seconds);
    e = sample(origin, proxy, []);
  } else {
    // bench/loadgen.ts marks the start and end of its measured window on stderr.
    const lg = startNode(`loadgen ${scenario}`, LOADGEN_CPU, nodeLoadgenArgs(dir, live.port, scenario, seconds, round));
    lg.child.stderr?.on('data', () => {
      if (!b && lg.err.includes('{"mark":"begin"}')) b = sample(origin, proxy, [lg.pid]);
      if (!e && lg.err.includes('{"mark":"end"}')) e = sample(origin, proxy, [lg.pid]);
    });
    const code = await lg.exited;
    if (code !== 0) throw new Error(`loadgen ${scenario} exited ${code}:\n${lg.err.slice(-2000)}`);
    loadgen = { tool: 'node', ...(JSON.parse(lg.out.trim()) as Omit<LoadgenOutput, 'tool'>) };
  }
  const bs = b as Sample | null;
  const es = e as Sample | null;
  if (!bs || !es) throw new Error(`loadgen ${scenario} did not mark its measured window`);
  const after = await originStats(dir, originPort);
  const wall = (es.t - bs.t) / 1000;
  const pct = (s: number): number => round1((s / wall) * 100);
  let other = 0;
  const others: Array<{ pid: number; comm: string; pct: number }> = [];
  for (const [pid, x] of es.other) {
    const d = x.cpu - (bs.other.get(pid)?.cpu ?? x.cpu);
    other += d;
    if (d > 0) others.push({ pid, comm: describe(pid, x.comm), pct: pct(d) });
  }
  others.sort((x, y) => y.pct - x.pct);
  const proxyCpu = es.proxy - bs.proxy;
  const count = loadgen.mode === 'small' ? (loadgen.requests ?? 0) : 0;
  return {
    loadgen,
    wall_s: Math.round(wall * 100) / 100,
    proxy_cpu_pct: proxy ? pct(proxyCpu) : null,
    proxy_processes: proxy ? es.processes : null,
    per_proxy_cpu_s: proxy && count && proxyCpu > 0 ? Math.round(count / proxyCpu) : null,
    origin_cpu_pct: pct(es.origin - bs.origin),
    other_cpu_pct: pct(other),
    other_top: others.slice(0, 3),
    steal_pct: pct(es.steal - bs.steal),
    proxy_rss_start: rssStart,
    proxy_peak_rss: proxy && peakReset ? treeMemory(proxy.pid).hwm : null,
    origin: statsDelta(before, after),
  };
}

const isBulk = (s: ScenarioName): boolean => s === 'download' || s === 'upload';
/** small-50 runs once (its margins are wide, and the observability rounds repeat it). */
const roundsFor = (s: ScenarioName): number => (s === 'small-50' ? 1 : isBulk(s) ? BULK_RUNS : ROUNDS);
/** Round r starts the order r places further along: each target is first (and last) in turn. */
const rotate = <T>(xs: T[], r: number): T[] => xs.map((_, i) => xs[(i + r) % xs.length]!);
/** What a scenario is judged by: p50 at 1 connection, else the rate. */
function headline(s: ScenarioName, r: ScenarioResult): number | null {
  const lg = r.loadgen;
  return (s === 'small-1' ? lg.p50_us : lg.mode === 'small' ? lg.rps : lg.best_mib_per_s) ?? null;
}
/** The round with the median headline (the lower middle one of an even count). */
function medianRound(s: ScenarioName, rounds: Array<ScenarioResult | null>): ScenarioResult | undefined {
  const ok = rounds.filter((r): r is ScenarioResult => r !== null && r !== undefined && headline(s, r) !== null);
  ok.sort((a, b) => headline(s, a)! - headline(s, b)!);
  return ok[Math.floor((ok.length - 1) / 2)];
}

/**
 * Every target runs for the whole bench (the proxies pinned to core 0, the ones not measured
 * sit idle), and each scenario is measured against every target back to back: the VM's speed
 * drifts over a minute, so numbers taken seconds apart compare better than numbers taken minutes
 * apart.
 */
async function benchAll(dir: string, shim: string | null, origin: Proc, originPort: number, targets: Target[]): Promise<Results> {
  const results: Results = {};
  const live = new Map<TargetName, Live>();
  try {
    for (const t of targets) {
      results[t.name] = { scenarios: {}, idle_rss: null, idle_processes: null, rss_after: null, peak_rss: null };
      if (t.skip) {
        results[t.name] = { ...results[t.name]!, skipped: t.skip };
        process.stderr.write(`  ${t.name}: skipped (${t.skip})\n`);
        continue;
      }
      try {
        live.set(t.name, await t.start(dir, originPort));
      } catch (err) {
        const msg = (err as Error).message;
        results[t.name] = { ...results[t.name]!, skipped: `did not start: ${msg.slice(0, 1500)}` };
        process.stderr.write(`  ${t.name}: DID NOT START: ${msg.slice(0, 1500)}\n`);
      }
    }
    await sleep(500);
    for (const [name, l] of live) {
      if (!l.proxy) continue;
      const m = treeMemory(l.proxy.pid);
      results[name]!.idle_rss = m.rss;
      results[name]!.idle_processes = m.processes;
    }
    for (const t of targets) {
      const l = live.get(t.name);
      const warm = (['small-50', 'small-1'] as const).filter((s) => t.scenarios.includes(s));
      if (WARMUP_ALL_SECONDS === 0 || warm.length === 0 || !l || (l.proxy && !isRunning(l.proxy))) continue;
      process.stderr.write(`  warm-up ${t.name}: ${warm.join(', ')}, ${WARMUP_ALL_SECONDS} s each ...`);
      try {
        for (const s of warm) await runScenario(dir, shim, l, s, origin, originPort, WARMUP_ALL_SECONDS);
        process.stderr.write(' done\n');
      } catch (err) {
        // the scenarios that follow report the failure where it counts
        process.stderr.write(` FAILED: ${(err as Error).message.slice(0, 500)}\n`);
      }
    }
    for (const s of ALL_SCENARIOS) {
      const rounds = roundsFor(s);
      // whole seconds: wrk takes no fractions
      const seconds = rounds > 1 && !isBulk(s) ? Math.max(2, Math.round(SECONDS / rounds)) : SECONDS;
      const runs = targets.filter((t) => live.has(t.name) && t.scenarios.includes(s));
      for (let round = 0; round < rounds; round++) {
        for (const t of rotate(runs, round)) {
          const l = live.get(t.name)!;
          if (l.proxy && !isRunning(l.proxy)) {
            process.stderr.write(`  ${s} ${t.name}: the proxy has exited (${l.proxy.child.exitCode}); skipped\n`);
            continue;
          }
          process.stderr.write(`  ${s} ${t.name}${rounds > 1 ? ` (round ${round + 1}/${rounds})` : ''} ...`);
          const all = ((results[t.name]!.rounds ??= {})[s] ??= []);
          try {
            const r = await runScenario(dir, shim, l, s, origin, originPort, seconds, round);
            all[round] = r;
            const lg = r.loadgen;
            const line = lg.mode === 'small' ? `${lg.rps} ${s === 'close' ? 'conn' : 'req'}/s, p50 ${lg.p50_us} µs` : `${lg.best_mib_per_s} MiB/s`;
            process.stderr.write(` ${line}${r.proxy_cpu_pct !== null ? `, proxy ${r.proxy_cpu_pct}% CPU` : ''}${lg.errors ? `, ${lg.errors} ERRORS: ${lg.error_samples[0]}` : ''}\n`);
          } catch (err) {
            process.stderr.write(` FAILED: ${(err as Error).message.slice(0, 500)}\n`);
            all[round] = null;
            (results[t.name]!.failures ??= []).push(`${s}${rounds > 1 ? ` round ${round + 1}` : ''}: ${(err as Error).message.slice(0, 500)}`);
          }
        }
      }
      for (const t of runs) results[t.name]!.scenarios[s] = medianRound(s, results[t.name]!.rounds?.[s] ?? []);
    }
    const pair = [live.get('mtls-proxy'), live.get(OBS)];
    for (let round = 0; round < OBS_ROUNDS && pair.every((l) => l?.proxy && isRunning(l.proxy)); round++) {
      for (const name of round % 2 === 0 ? [OBS, 'mtls-proxy'] : ['mtls-proxy', OBS]) {
        process.stderr.write(`  small-50 ${name} (observability round ${round + 1}/${OBS_ROUNDS}) ...`);
        try {
          const r = await runScenario(dir, shim, live.get(name)!, 'small-50', origin, originPort, OBS_SECONDS);
          (results[name]!.obs_rounds ??= []).push({ rps: r.loadgen.rps ?? null, per_proxy_cpu_s: r.per_proxy_cpu_s });
          process.stderr.write(` ${r.loadgen.rps} req/s\n`);
        } catch (err) {
          process.stderr.write(` FAILED: ${(err as Error).message.slice(0, 500)}\n`);
        }
      }
    }
    const plainLive = live.get('mtls-proxy');
    const obsLive = live.get(OBS);
    for (let round = 0; round < OBS_SIDE_ROUNDS && plainLive?.proxy && obsLive?.proxy && isRunning(plainLive.proxy) && isRunning(obsLive.proxy); round++) {
      process.stderr.write(`  small-50 mtls-proxy and ${OBS} side by side (round ${round + 1}/${OBS_SIDE_ROUNDS}) ...`);
      try {
        const [a, o] = await sideBySide(dir, shim, plainLive, obsLive, origin, CONNS >> 1);
        const r = { plain_rps: a!.lg.rps!, obs_rps: o!.lg.rps!, plain_cpu_us: a!.cpuUs, obs_cpu_us: o!.cpuUs };
        (results[OBS]!.obs_side ??= []).push(r);
        process.stderr.write(` ${r.plain_rps} and ${r.obs_rps} req/s\n`);
      } catch (err) {
        process.stderr.write(` FAILED: ${(err as Error).message.slice(0, 500)}\n`);
      }
    }
    const haLive = live.get('haproxy');
    const latOn = ['mtls-proxy', 'haproxy'].every((n) => targets.find((t) => t.name === n)?.scenarios.includes('small-1'));
    for (let round = 0; latOn && round < LAT_SIDE_ROUNDS && plainLive?.proxy && haLive?.proxy && isRunning(plainLive.proxy) && isRunning(haLive.proxy); round++) {
      process.stderr.write(`  small-1 mtls-proxy and haproxy side by side (round ${round + 1}/${LAT_SIDE_ROUNDS}) ...`);
      try {
        // which one gets the first wrk alternates, in case starting first matters
        const flip = round % 2 === 1;
        const pair = await sideBySide(dir, shim, flip ? haLive : plainLive, flip ? plainLive : haLive, origin, 1);
        const [m, h] = flip ? [pair[1]!, pair[0]!] : [pair[0]!, pair[1]!];
        const r: LatRound = { mtls_p50_us: m.lg.p50_us!, haproxy_p50_us: h.lg.p50_us!, mtls_rps: m.lg.rps!, haproxy_rps: h.lg.rps!, mtls_cpu_us: m.cpuUs, haproxy_cpu_us: h.cpuUs };
        (results.haproxy!.lat_side ??= []).push(r);
        process.stderr.write(` p50 ${r.mtls_p50_us} and ${r.haproxy_p50_us} µs\n`);
      } catch (err) {
        process.stderr.write(` FAILED: ${(err as Error).message.slice(0, 500)}\n`);
      }
    }
    const closeOn = ['mtls-proxy', 'haproxy'].every((n) => targets.find((t) => t.name === n)?.scenarios.includes('close'));
    for (let round = 0; closeOn && round < CLOSE_SIDE_ROUNDS && plainLive?.proxy && haLive?.proxy && isRunning(plainLive.proxy) && isRunning(haLive.proxy); round++) {
      process.stderr.write(`  close mtls-proxy and haproxy side by side (round ${round + 1}/${CLOSE_SIDE_ROUNDS}) ...`);
      try {
        const flip = round % 2 === 1;
        const pair = await sideBySide(dir, shim, flip ? haLive : plainLive, flip ? plainLive : haLive, origin, CONNS >> 1, true);
        const [m, h] = flip ? [pair[1]!, pair[0]!] : [pair[0]!, pair[1]!];
        const r: CloseRound = { mtls_cps: m.lg.rps!, haproxy_cps: h.lg.rps!, mtls_cpu_us: m.cpuUs, haproxy_cpu_us: h.cpuUs };
        (results.haproxy!.close_side ??= []).push(r);
        process.stderr.write(` ${r.mtls_cps} and ${r.haproxy_cps} conns/s\n`);
      } catch (err) {
        process.stderr.write(` FAILED: ${(err as Error).message.slice(0, 500)}\n`);
      }
    }
    await sleep(500);
    for (const [name, l] of live) {
      if (!l.proxy || !isRunning(l.proxy)) continue;
      const result = results[name]!;
      const m = treeMemory(l.proxy.pid);
      result.rss_after = m.rss;
      const peaks = Object.values(result.scenarios).map((sc) => sc?.proxy_peak_rss ?? 0);
      result.peak_rss = Math.max(m.hwm, result.idle_rss ?? 0, ...peaks);
    }
  } finally {
    for (const [name, l] of live) {
      if (!l.proxy) continue;
      // Anything at warn or above (request logging is off): worth a look when it is not empty.
      const log = `${l.proxy.out}${l.proxy.err}`.replace(/^\{"listening":\d+\}\n/, '').trim();
      if (log) results[name]!.proxy_log_tail = log.slice(-4000);
      await stop(l.proxy);
    }
  }
  return results;
}

// ---- report ------------------------------------------------------------------------------

const SCENARIO_LABEL: Record<ScenarioName, string> = {
  'small-1': `small GET, 1 conn${ROUNDS > 1 ? ` (median of ${ROUNDS} rounds)` : ''}`,
  'small-50': `small GET, ${CONNS} conns`,
  close: `Connection: close, ${CONNS} conns${ROUNDS > 1 ? ` (median of ${ROUNDS} rounds)` : ''}`,
  download: '256 MiB download',
  upload: '256 MiB upload',
};

const MIB = 2 ** 20;
const mib = (n: number | null | undefined): number | null => (n === null || n === undefined ? null : round1(n / MIB));
const fmt = (n: number | null | undefined): string => (n === null || n === undefined || Number.isNaN(n) ? '–' : Math.abs(n) >= 100 ? String(Math.round(n)) : String(n));
const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a === null || a === undefined || b === null || b === undefined || b === 0 ? null : Math.round((a / b) * 100) / 100;

const scenarioOf = (results: Results, t: TargetName, s: ScenarioName): ScenarioResult | undefined => results[t]?.scenarios[s];
const rpsOf = (results: Results, t: TargetName, s: ScenarioName): number | null => scenarioOf(results, t, s)?.loadgen.rps ?? null;
const perCpuOf = (results: Results, t: TargetName, s: ScenarioName): number | null => scenarioOf(results, t, s)?.per_proxy_cpu_s ?? null;
const mibsOf = (results: Results, t: TargetName, s: ScenarioName): number | null => scenarioOf(results, t, s)?.loadgen.best_mib_per_s ?? null;
const p50Of = (results: Results, t: TargetName, s: ScenarioName): number | null => scenarioOf(results, t, s)?.loadgen.p50_us ?? null;

/**
 * A check's value from the rounds: f(a's round, b's round) for each round both completed (runs
 * seconds apart), and the median of those; the values per round, for the detail line.
 */
function paired(results: Results, s: ScenarioName, a: TargetName, b: TargetName, f: (x: ScenarioResult, y: ScenarioResult) => number | null): { value: number | null; rounds: number[] } {
  const ra = results[a]?.rounds?.[s] ?? [];
  const rb = results[b]?.rounds?.[s] ?? [];
  const rounds: number[] = [];
  for (let i = 0; i < Math.min(ra.length, rb.length); i++) {
    const x = ra[i];
    const y = rb[i];
    const v = x && y ? f(x, y) : null;
    if (v !== null && Number.isFinite(v)) rounds.push(Math.round(v * 100) / 100);
  }
  return { value: rounds.length ? median(rounds) : null, rounds };
}

function addedP50(results: Results, t: TargetName): number | null {
  const p = p50Of(results, t, 'small-1');
  const d = p50Of(results, 'direct', 'small-1');
  return p === null || d === null ? null : p - d;
}

/** The 1-connection side-by-side rounds, for the latency check's detail ('' when none ran). */
function latSideNote(results: Results): string {
  const side = results.haproxy?.lat_side ?? [];
  if (side.length === 0) return '';
  const diffs = side.map((r) => r.mtls_p50_us - r.haproxy_p50_us);
  return `; side by side on one core, 1 conn each (${side.length} rounds): p50 mtls-proxy ${side.map((r) => r.mtls_p50_us).join(', ')} against haproxy ${side.map((r) => r.haproxy_p50_us).join(', ')} µs, median difference ${fmt(median(diffs))} µs`;
}

/** The 1-connection side-by-side rounds as a table, with a blank line after ([] when none ran). */
function latSideSection(results: Results): string[] {
  const side = results.haproxy?.lat_side ?? [];
  if (side.length === 0) return [];
  return [
    `Small GET, 1 conn, mtls-proxy and haproxy side by side on the proxy core (each with its own wrk, ${OBS_SIDE_SECONDS} s per round after 1 s of warm-up): both see the same machine state, so the p50s compare as the rounds above cannot.`,
    '',
    '| round | p50 µs mtls-proxy | p50 µs haproxy | difference µs | req/s mtls-proxy | req/s haproxy | proxy CPU µs per request mtls-proxy | haproxy |',
    '|--:|--:|--:|--:|--:|--:|--:|--:|',
    ...side.map((r, i) => `| ${i + 1} | ${r.mtls_p50_us} | ${r.haproxy_p50_us} | ${r.mtls_p50_us - r.haproxy_p50_us} | ${fmt(r.mtls_rps)} | ${fmt(r.haproxy_rps)} | ${fmt(r.mtls_cpu_us)} | ${fmt(r.haproxy_cpu_us)} |`),
    '',
  ];
}

/** The Connection: close side-by-side rounds, for the close check's detail ('' when none ran). */
function closeSideNote(results: Results): string {
  const side = results.haproxy?.close_side ?? [];
  if (side.length === 0) return '';
  const cps = side.map((r) => r.mtls_cps / r.haproxy_cps);
  const cpu = side.filter((r) => r.mtls_cpu_us && r.haproxy_cpu_us).map((r) => r.haproxy_cpu_us! / r.mtls_cpu_us!);
  const two = (n: number | null): string => (n === null ? '–' : n.toFixed(2));
  return `; side by side on one core, ${CONNS >> 1} conns each (${side.length} rounds): conns/s mtls-proxy / haproxy ${cps.map(two).join(', ')}, median ${two(median(cps))}; proxy CPU per connection haproxy / mtls-proxy ${cpu.length ? `median ${two(median(cpu))}` : '–'}`;
}

/** The Connection: close side-by-side rounds as a table, with a blank line after ([] when none ran). */
function closeSideSection(results: Results): string[] {
  const side = results.haproxy?.close_side ?? [];
  if (side.length === 0) return [];
  return [
    `Connection: close, mtls-proxy and haproxy side by side on the proxy core (each with its own wrk, ${CONNS >> 1} connections, ${OBS_SIDE_SECONDS} s per round after 1 s of warm-up): alone, this scenario is bound by wrk's handshakes on core 1 as much as by the proxy, and its rounds swing with the machine.`,
    '',
    '| round | conns/s mtls-proxy | conns/s haproxy | ratio | proxy CPU µs per connection mtls-proxy | haproxy |',
    '|--:|--:|--:|--:|--:|--:|',
    ...side.map((r, i) => `| ${i + 1} | ${fmt(r.mtls_cps)} | ${fmt(r.haproxy_cps)} | ${(r.mtls_cps / r.haproxy_cps).toFixed(2)} | ${fmt(r.mtls_cpu_us)} | ${fmt(r.haproxy_cpu_us)} |`),
    '',
  ];
}

/** The most a bulk scenario raised the proxy's RSS (peak during it minus RSS at its start), over every round. */
function growth(results: Results, t: TargetName): number | null {
  const g = (['download', 'upload'] as const)
    .flatMap((s) => results[t]?.rounds?.[s] ?? [scenarioOf(results, t, s)])
    .filter((r): r is ScenarioResult => r?.proxy_peak_rss != null && r.proxy_rss_start != null)
    .map((r) => (r.proxy_peak_rss ?? 0) - (r.proxy_rss_start ?? 0));
  return g.length ? Math.max(...g) : null;
}

interface Row {
  scenario: string;
  metric: string;
  values: Record<string, number | null>;
  ratios: boolean;
}

function rows(results: Results): Row[] {
  const per = (f: (t: TargetName) => number | null): Record<string, number | null> => Object.fromEntries(PEERS.map((t) => [t, results[t] && !results[t].skipped ? f(t) : null]));
  const proxyOnly = (f: (t: TargetName) => number | null): Record<string, number | null> => per((t) => (t === 'direct' ? null : f(t)));
  const out: Row[] = [];
  const push = (scenario: string, metric: string, values: Record<string, number | null>, ratios = true): void => {
    out.push({ scenario, metric, values, ratios });
  };
  push(SCENARIO_LABEL['small-1'], 'req/s', per((t) => rpsOf(results, t, 'small-1')));
  push(SCENARIO_LABEL['small-1'], 'p50 µs', per((t) => p50Of(results, t, 'small-1')));
  push(SCENARIO_LABEL['small-1'], 'p99 µs', per((t) => scenarioOf(results, t, 'small-1')?.loadgen.p99_us ?? null));
  push(SCENARIO_LABEL['small-1'], 'added p50 µs (vs direct)', proxyOnly((t) => addedP50(results, t)));
  push(SCENARIO_LABEL['small-50'], 'req/s', per((t) => rpsOf(results, t, 'small-50')));
  push(SCENARIO_LABEL['small-50'], 'p50 µs', per((t) => p50Of(results, t, 'small-50')));
  push(SCENARIO_LABEL['small-50'], 'p99 µs', per((t) => scenarioOf(results, t, 'small-50')?.loadgen.p99_us ?? null));
  push(SCENARIO_LABEL['small-50'], 'req per proxy CPU-second', proxyOnly((t) => perCpuOf(results, t, 'small-50')));
  push(SCENARIO_LABEL.close, 'new TLS conns/s', per((t) => rpsOf(results, t, 'close')));
  push(SCENARIO_LABEL.close, 'conns per proxy CPU-second', proxyOnly((t) => perCpuOf(results, t, 'close')));
  push(SCENARIO_LABEL.download, `MiB/s (median of ${BULK_RUNS})`, per((t) => mibsOf(results, t, 'download')));
  push(SCENARIO_LABEL.upload, `MiB/s (median of ${BULK_RUNS})`, per((t) => mibsOf(results, t, 'upload')));
  push('proxy memory', 'idle RSS MiB', proxyOnly((t) => mib(results[t]?.idle_rss)));
  push('proxy memory', 'peak RSS MiB', proxyOnly((t) => mib(results[t]?.peak_rss)));
  push('proxy memory', 'RSS growth streaming MiB', proxyOnly((t) => mib(growth(results, t))));
  push('proxy', 'processes', proxyOnly((t) => results[t]?.idle_processes ?? null), false);
  push('all', 'errors', per((t) => Object.values(results[t]?.scenarios ?? {}).reduce((n, r) => n + (r?.loadgen.errors ?? 0), 0)), false);
  return out;
}

const RATIO_AGAINST = ['direct', 'node-proxy', 'reply-from', 'haproxy', 'nginx'] as const;

function table(results: Results): string {
  const lines = [
    `| scenario | metric | ${PEERS.join(' | ')} | ${RATIO_AGAINST.map((p) => `mtls / ${p}`).join(' | ')} |`,
    `|---|---|${PEERS.map(() => '--:').join('|')}|${RATIO_AGAINST.map(() => '--:').join('|')}|`,
  ];
  for (const r of rows(results)) {
    const m = r.values['mtls-proxy'];
    const ratios = RATIO_AGAINST.map((p) => (r.ratios ? fmt(ratio(m, r.values[p])) : ''));
    lines.push(`| ${r.scenario} | ${r.metric} | ${PEERS.map((p) => fmt(r.values[p])).join(' | ')} | ${ratios.join(' | ')} |`);
  }
  return lines.join('\n');
}

function cpuTable(results: Results, targets: Target[]): string {
  const lines = [
    '| target | scenario | loadgen | loadgen CPU % | origin CPU % | proxy CPU % | proxy procs | per proxy CPU-s | upstream TLS conns opened (resumed) | other CPU % | steal % | proxy peak RSS MiB |',
    '|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const t of targets) {
    for (const s of ALL_SCENARIOS) {
      const r = scenarioOf(results, t.name, s);
      if (!r) continue;
      const up = t.name === 'direct' ? '–' : `${r.origin.connections} (${r.origin.resumed})`;
      lines.push(
        `| ${t.name} | ${SCENARIO_LABEL[s]} | ${r.loadgen.tool} | ${fmt(r.loadgen.loadgen_cpu_pct)} | ${fmt(r.origin_cpu_pct)} | ${fmt(r.proxy_cpu_pct)} | ${fmt(r.proxy_processes)} | ${fmt(r.per_proxy_cpu_s)} | ${up} | ${fmt(r.other_cpu_pct)} | ${fmt(r.steal_pct)} | ${fmt(mib(r.proxy_peak_rss))} |`,
      );
    }
  }
  return lines.join('\n');
}

function tlsTable(results: Results, targets: Target[]): string {
  const kinds = (m: Record<string, number>): string =>
    Object.entries(m)
      .map(([k, v]) => `${k} ×${v}`)
      .join(', ') || '–';
  const lines = ['| target | client → proxy: handshakes (resumed) | negotiated | proxy → origin: new connections (resumed) | negotiated |', '|---|--:|---|--:|---|'];
  for (const t of targets) {
    const sc = Object.values(results[t.name]?.scenarios ?? {}).filter((r): r is ScenarioResult => !!r);
    if (!sc.length) continue;
    const client: Record<string, number> = {};
    let hs = 0;
    let res = 0;
    const up: Record<string, number> = {};
    let upN = 0;
    let upRes = 0;
    for (const r of sc) {
      hs += r.loadgen.handshakes ?? 0;
      res += r.loadgen.resumed ?? 0;
      for (const [k, v] of Object.entries(r.loadgen.tls ?? {})) client[k] = (client[k] ?? 0) + v;
      upN += r.origin.connections;
      upRes += r.origin.resumed;
      for (const [k, v] of Object.entries(r.origin.tls)) up[k] = (up[k] ?? 0) + v;
    }
    const clientCol = t.name === 'direct' ? `${upN} (${upRes})` : `${hs} (${res})`;
    const clientKinds = t.name === 'direct' ? kinds(up) : kinds(client);
    lines.push(`| ${t.name} | ${clientCol} | ${clientKinds} | ${t.name === 'direct' ? '–' : `${upN} (${upRes})`} | ${t.name === 'direct' ? '–' : kinds(up)} |`);
  }
  return lines.join('\n');
}

interface Check {
  name: string;
  value: string;
  target: string;
  /** null: not measured (a peer missing, or the option not given). */
  pass: boolean | null;
  detail?: string;
}

function checks(results: Results): Check[] {
  const out: Check[] = [];
  const have = (t: TargetName): boolean => !!results[t] && !results[t].skipped;
  const ratioCheck = (name: string, a: number | null, b: number | null, min: number, detail?: string): void => {
    const r = ratio(a, b);
    out.push({ name, value: fmt(r), target: `>= ${min}`, pass: r === null ? null : r >= min, ...(detail ? { detail } : {}) });
  };
  const cpuDetail = (s: ScenarioName, peer: TargetName): string => `per proxy CPU-second: ${fmt(perCpuOf(results, 'mtls-proxy', s))} vs ${fmt(perCpuOf(results, peer, s))} = ${fmt(ratio(perCpuOf(results, 'mtls-proxy', s), perCpuOf(results, peer, s)))}`;
  ratioCheck(`small GET, ${CONNS} conns: mtls-proxy / reply-from req/s`, rpsOf(results, 'mtls-proxy', 'small-50'), have('reply-from') ? rpsOf(results, 'reply-from', 'small-50') : null, 2, cpuDetail('small-50', 'reply-from'));
  ratioCheck(`small GET, ${CONNS} conns: mtls-proxy / haproxy req/s`, rpsOf(results, 'mtls-proxy', 'small-50'), have('haproxy') ? rpsOf(results, 'haproxy', 'small-50') : null, 0.5, cpuDetail('small-50', 'haproxy'));
  // Per round, each proxy's p50 minus direct's of the same round; the median of those.
  const added = (t: TargetName): { value: number | null; rounds: number[] } => paired(results, 'small-1', t, 'direct', (x, y) => (x.loadgen.p50_us ?? NaN) - (y.loadgen.p50_us ?? NaN));
  const am = added('mtls-proxy');
  const ah = have('haproxy') ? added('haproxy') : { value: null, rounds: [] };
  out.push({
    name: `small GET, 1 conn: added p50 latency, mtls-proxy vs haproxy (µs, median of ${am.rounds.length} round(s))`,
    value: fmt(am.value),
    target: `<= ${fmt(ah.value)}`,
    pass: am.value === null || ah.value === null ? null : am.value <= ah.value,
    detail: `per round: mtls-proxy ${am.rounds.join(', ')}; haproxy ${ah.rounds.join(', ') || '–'}${latSideNote(results)}`,
  });
  const pairedCheck = (name: string, s: ScenarioName, peer: TargetName, min: number, extra = ''): void => {
    const metric = (r: ScenarioResult): number => (r.loadgen.mode === 'small' ? r.loadgen.rps : r.loadgen.best_mib_per_s) ?? NaN;
    const p = have(peer) ? paired(results, s, 'mtls-proxy', peer, (x, y) => metric(x) / metric(y)) : { value: null, rounds: [] };
    out.push({ name: `${name} (median of ${p.rounds.length} round(s))`, value: fmt(p.value), target: `>= ${min}`, pass: p.value === null ? null : p.value >= min, detail: `per round: ${p.rounds.join(', ') || '–'}${extra}` });
  };
  // the reference: what a relay that does no TLS work reads against direct in the same rounds
  const relayNote = (s: ScenarioName): string => {
    if (!have(RELAY)) return '';
    const mibs = (r: ScenarioResult): number => r.loadgen.best_mib_per_s ?? NaN;
    const p = paired(results, s, RELAY, 'direct', (x, y) => mibs(x) / mibs(y));
    return `; a TCP relay on the proxy's core (HAProxy mode tcp, no TLS work, TLS end to end), same rounds: ${fmt(p.value)} of direct (${p.rounds.join(', ') || '–'})`;
  };
  pairedCheck('256 MiB download: mtls-proxy / direct MiB/s', 'download', 'direct', 0.95, relayNote('download'));
  pairedCheck('256 MiB upload: mtls-proxy / direct MiB/s', 'upload', 'direct', 0.95, relayNote('upload'));
  const g = mib(growth(results, 'mtls-proxy'));
  out.push({ name: 'mtls-proxy RSS growth while streaming 256 MiB (MiB)', value: fmt(g), target: '<= 16', pass: g === null ? null : g <= 16 });
  const idle = mib(results['mtls-proxy']?.idle_rss);
  out.push({ name: 'mtls-proxy idle RSS (MiB)', value: fmt(idle), target: '<= 60', pass: idle === null ? null : idle <= 60 });
  pairedCheck('Connection: close: mtls-proxy / haproxy new TLS conns/s', 'close', 'haproxy', 1, `; median rounds' ${cpuDetail('close', 'haproxy')}${closeSideNote(results)}`);
  const pairs = obsPairs(results);
  const side = results[OBS]?.obs_side ?? [];
  const sideRps = median(side.map((r) => r.obs_rps / r.plain_rps));
  const seqRps = median(pairs.map((p) => p.rps));
  const obs = side.length > 0 ? sideRps : seqRps;
  const sequential = `one after the other (the scenario and ${pairs.length - 1} alternating rounds): median ${fmt(seqRps)} (${pairs.map((p) => fmt(p.rps)).join(', ')}), per proxy CPU-second ${fmt(median(pairs.flatMap((p) => (p.cpu === null ? [] : [p.cpu]))))}`;
  out.push({
    name: side.length > 0
      ? `observability (issue 3): mtls-proxy with metrics + request log / without, small GET, ${CONNS} conns, req/s side by side on one core (median of ${side.length} round(s))`
      : `observability (issue 3): mtls-proxy with metrics + request log / without, small GET, ${CONNS} conns, req/s (median of ${pairs.length} pair(s))`,
    value: fmt(obs),
    target: '>= 0.9',
    pass: obs === null ? null : obs >= 0.9,
    detail: results[OBS]?.skipped
      ? oneLine(results[OBS].skipped)
      : side.length > 0
        ? `rounds: ${side.map((r) => fmt(ratio(r.obs_rps, r.plain_rps))).join(', ')}; CPU per request without / with, median ${fmt(median(side.flatMap((r) => (r.plain_cpu_us && r.obs_cpu_us ? [r.plain_cpu_us / r.obs_cpu_us] : []))))}; ${sequential}`
        : sequential,
  });
  if (WORKERS) {
    const w = `mtls-proxy-w${WORKERS}`;
    const procs = scenarioOf(results, w, 'small-50')?.proxy_processes ?? null;
    const r = ratio(perCpuOf(results, w, 'small-50'), perCpuOf(results, 'mtls-proxy', 'small-50'));
    const running = procs !== null && procs > 1;
    out.push({
      name: `workers: req per proxy CPU-second, ${WORKERS} workers / 1 worker (small GET, ${CONNS} conns)`,
      value: fmt(r),
      target: '>= 0.9',
      pass: r === null || !running ? null : r >= 0.9,
      detail: results[w]?.skipped ? `mtls-proxy with workers = ${WORKERS}: ${oneLine(results[w].skipped)}` : `${fmt(procs)} process(es) in its tree${running ? '' : `: server.workers = ${WORKERS} was accepted but only one process served (not implemented yet?)`}`,
    });
  } else {
    out.push({ name: 'workers: req per proxy CPU-second at 2 workers / 1 worker', value: '–', target: '>= 0.9', pass: null, detail: 'not measured: run with --workers 2' });
  }
  return out;
}

const oneLine = (text: string): string => text.trim().replace(/\s*\n\s*/g, ' ').slice(0, 400);

const checkLine = (c: Check): string => `- ${c.pass === null ? 'n/a ' : c.pass ? 'PASS' : 'FAIL'} ${c.name}: ${c.value} (target ${c.target})${c.detail ? `; ${c.detail}` : ''}`;

function sanity(results: Results, targets: Target[], originErr: string): string[] {
  const notes: string[] = [...setupNotes];
  const upstreamKinds = new Set<string>();
  for (const t of targets) {
    const res = results[t.name];
    if (!res) continue;
    if (res.skipped) {
      notes.push(`${t.name}: not measured: ${oneLine(res.skipped)}`);
      continue;
    }
    for (const f of res.failures ?? []) notes.push(`${t.name}: FAILED ${oneLine(f)}`);
    for (const s of t.scenarios) {
      const r = res.scenarios[s];
      if (!r) continue;
      const lg = r.loadgen;
      if (lg.errors) notes.push(`${t.name} ${s}: ${lg.errors} error(s), e.g. ${lg.error_samples.slice(0, 3).join(' | ')}`);
      const v = lg.mode === 'small' ? lg.rps : lg.best_mib_per_s;
      if (!v) notes.push(`${t.name} ${s}: zero throughput`);
      const d = scenarioOf(results, 'direct', s)?.loadgen;
      const dv = d ? (d.mode === 'small' ? d.rps : d.best_mib_per_s) : undefined;
      // Direct is no ceiling for Connection: close: there the Node origin does the handshakes, on
      // core 1 next to the loadgen (bench/README.md).
      if (t.name !== 'direct' && s !== 'close' && v && dv && v > dv) notes.push(`${t.name} ${s}: faster than direct (${v} > ${dv})`);
      if (r.other_cpu_pct >= 10) {
        const top = r.other_top.map((o) => `${o.comm} (pid ${o.pid}) ${o.pct}%`).join(', ');
        notes.push(`${t.name} ${s}: other processes used ${r.other_cpu_pct}% of a core during the run (${top}): numbers disturbed`);
      }
      if (r.steal_pct >= 5) notes.push(`${t.name} ${s}: hypervisor steal ${r.steal_pct}% of a core during the run: numbers disturbed`);
      if (lg.loadgen_cpu_pct >= 90) notes.push(`${t.name} ${s}: the loadgen used ${lg.loadgen_cpu_pct}% of a core: it may be the bottleneck`);
      const core1 = lg.loadgen_cpu_pct + r.origin_cpu_pct;
      if (r.proxy_cpu_pct !== null && core1 >= 90 && r.proxy_cpu_pct < 85 && !t.name.startsWith('mtls-proxy-w')) {
        notes.push(`${t.name} ${s}: core 1 was the limit (loadgen ${lg.loadgen_cpu_pct}% + origin ${r.origin_cpu_pct}%) with the proxy at ${r.proxy_cpu_pct}%: this throughput understates the proxy; compare per proxy CPU-second`);
      } else if (s !== 'small-1' && r.proxy_cpu_pct !== null && core1 < 85 && r.proxy_cpu_pct < 85 && !t.name.startsWith('mtls-proxy-w')) {
        notes.push(`${t.name} ${s}: neither core was busy (proxy ${r.proxy_cpu_pct}%, loadgen + origin ${round1(core1)}%): the run was bound by wake-up latency between the cores, not by CPU; compare per proxy CPU-second`);
      }
      const runs = isBulk(s) ? (res.rounds?.[s] ?? []).flatMap((x) => (x?.loadgen.best_mib_per_s ? [x.loadgen.best_mib_per_s] : [])) : [];
      if (runs.length > 1 && Math.max(...runs) > 2 * Math.min(...runs)) notes.push(`${t.name} ${s}: the rounds' transfers differ by more than 2x (${runs.join(', ')} MiB/s): a stall or a disturbance; the median is reported`);
      if (t.name !== 'direct' && r.origin.tls_errors) notes.push(`${t.name} ${s}: ${r.origin.tls_errors} TLS handshake(s) from the proxy to the origin failed (aborted or rejected; warm-up included)`);
      if (r.origin.bad_requests) notes.push(`${t.name} ${s}: the origin answered ${r.origin.bad_requests} bad request(s) with 400 (see its stderr)`);
      if (lg.mode === 'small' && (lg.resumed ?? 0) > 0) notes.push(`${t.name} ${s}: the client resumed ${lg.resumed} of ${lg.handshakes} TLS sessions`);
      if (t.name !== 'direct') {
        for (const k of Object.keys(r.origin.tls)) upstreamKinds.add(k);
        const reqs = lg.mode === 'small' ? (lg.requests ?? 0) : 0;
        if (s !== 'close' && reqs && r.origin.connections > 2 * CONNS + 10) notes.push(`${t.name} ${s}: opened ${r.origin.connections} upstream TLS connections for ~${reqs} requests: upstream connections are not reused`);
        if (s === 'close' && reqs && r.origin.connections > reqs / 10) notes.push(`${t.name} close: opened ${r.origin.connections} upstream TLS connections for ~${reqs} requests: a new upstream connection per client connection`);
      }
    }
    if (res.proxy_log_tail) notes.push(`${t.name} wrote to its log (last line): ${res.proxy_log_tail.trim().split('\n').at(-1)?.slice(0, 300)}`);
  }
  if (upstreamKinds.size > 1) notes.push(`the proxies negotiated different TLS versions/ciphers toward the origin: ${[...upstreamKinds].join(', ')}`);
  if (originErr.trim()) notes.push(`the origin wrote to stderr: ${originErr.trim().split('\n').slice(-3).join(' | ').slice(0, 500)}`);
  return notes;
}

/** gitCommit() when dist/ was built, at the start of the run. */
let builtFrom = '';

function gitCommit(): string {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' });
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src', 'bin'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== '';
  return `${r.stdout.trim()}${dirty ? ' (+ uncommitted changes in src/ or bin/)' : ''}`;
}

function versions(): Record<string, string> {
  const first = (cmd: string, args: string[]): string => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? '';
  };
  const v: Record<string, string> = { node: process.version, node_openssl: process.versions.openssl ?? '' };
  if (has('haproxy')) v.haproxy = first('haproxy', ['-v']);
  if (has('nginx')) v.nginx = first('nginx', ['-v']);
  if (has('wrk')) v.wrk = first('wrk', ['-v']);
  if (has('openssl')) v.system_openssl = first('openssl', ['version']);
  const req = createRequire(join(BENCH, 'peers', 'reply-from.ts'));
  for (const p of ['fastify', '@fastify/reply-from']) {
    try {
      v[p] = (JSON.parse(readFileSync(req.resolve(`${p}/package.json`), 'utf8')) as { version: string }).version;
    } catch {
      // not installed
    }
  }
  return v;
}

// ---- main --------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (opts['with-native']) installNative();
  process.stderr.write('building dist/ (npm run build) ...\n');
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  // the code measured is what was built now: edits made during the run are not in it
  builtFrom = gitCommit();
  const dir = mkdtempSync(join(tmpdir(), 'mtls-bench-'));
  tempDir = dir;
  const started = Date.now();
  const loadBefore = readFileSync('/proc/loadavg', 'utf8').trim();
  try {
    const pki = await createDevPki();
    const files: Record<string, string> = {
      'ca.pem': pki.ca.cert,
      'server.pem': pki.server.cert,
      'server-key.pem': pki.server.key,
      'client.pem': pki.client.cert,
      'client-key.pem': pki.client.key,
      'proxy.pem': pki.proxy.cert,
      'proxy-key.pem': pki.proxy.key,
    };
    for (const [name, pem] of Object.entries(files)) writeFileSync(join(dir, name), pem, { mode: 0o600 });
    haproxyPems(dir, files);
    writeFileSync(join(dir, 'wrk.lua'), WRK_LUA);
    const shim = buildWrkShim(dir);
    const targets = targetsToRun();
    const tool = shim ? 'wrk (+ bench/tools/wrk-client-cert.c)' : 'bench/loadgen.ts';

    process.stderr.write(
      `bench: ${SECONDS} s per small-request scenario (+${WARMUP_SECONDS} s warm-up; ${WARMUP_ALL_SECONDS} s at 50 and at 1 connection per target before the first) with ${tool}, ${ROUNDS} rounds at 1 connection and Connection: close, ${BULK_RUNS} rounds of 256 MiB per bulk scenario (+1 warm-up transfer) with bench/loadgen.ts${HAS_TASKSET ? '' : ' (taskset missing: NOT pinned)'}\n`,
    );
    const origin = startNode('origin', ORIGIN_CPU, [join(BENCH, 'origin.ts'), '--dir', dir]);
    try {
      const originPort = Number((await waitFor(origin, /\{"listening":(\d+)\}/))[1]);
      const results = await benchAll(dir, shim, origin, originPort, targets);

      const summary = table(results);
      const cpu = cpuTable(results, targets);
      const tls = tlsTable(results, targets);
      const roundsSection = roundsTable(results, targets);
      const checkList = checks(results);
      const notes = sanity(results, targets, origin.err);
      const checkLines = checkList.map(checkLine);
      const vers = versions();
      const env = `Node ${process.version}, ${NCPU} x ${cpus()[0]?.model ?? 'unknown CPU'}, commit ${builtFrom || gitCommit()}, ${new Date().toISOString()}`;
      const workersSection = WORKERS ? workersTable(results) : '';
      const obsSection = results[OBS] ? obsTable(results) : '';
      const md = [
        '# mtls-proxy bench: latest run',
        '',
        env,
        '',
        `Command: \`npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\` (BENCH_SECONDS=${SECONDS}, BENCH_ROUNDS=${ROUNDS}, BENCH_BULK_RUNS=${BULK_RUNS}). ${Object.entries(vers)
          .map(([k, v]) => `${k}: ${v}`)
          .join('; ')}.`,
        '',
        `Every proxy on core 0 (the one measured; the others idle), origin and load generator on core 1${HAS_TASKSET ? '' : ' (taskset missing: not pinned)'}; each scenario runs every target back to back.${WARMUP_ALL_SECONDS > 0 ? ` Before the first, every target served ${WARMUP_ALL_SECONDS} s of small requests at ${CONNS} connections and ${WARMUP_ALL_SECONDS} s at 1 (JIT warm-up; idle RSS is taken before it).` : ''}`,
        `Small requests and Connection: close: ${tool}; 256 MiB transfers: bench/loadgen.ts. mtls-proxy: from dist/, \`--max-semi-space-size=1\`, log level warn, no request log, no admin listener.`,
        'MiB/s = 2^20 bytes/s. Ratios < 1 on latency and memory rows mean mtls-proxy is lower (better). Memory and CPU of multi-process proxies (nginx: master + worker) are summed over their processes.',
        '',
        summary,
        '',
        '## Targets (issues 5 and 3)',
        '',
        ...checkLines,
        '',
        ...(workersSection ? ['## Workers', '', workersSection, ''] : []),
        ...(obsSection
          ? ['## Observability', '', `mtls-proxy as above, and \`${OBS}\`: the same with an \`[admin]\` listener (Prometheus metrics) and a \`[request_log]\` (SQLite, one row per request), idle admin API. Run back to back with mtls-proxy in each scenario.`, '', obsSection, '']
          : []),
        '## Rounds',
        '',
        `Each round runs every target once, in an order rotated per round; the tables above show each target's median round, and the checks take the median of the per-round ratios.`,
        '',
        roundsSection,
        '',
        ...latSideSection(results),
        ...closeSideSection(results),
        '## Where the CPU went',
        '',
        "CPU time over the measured window, in % of one core: origin and proxy (all its processes) from /proc/<pid>/stat (utime+stime); the loadgen's own: wrk's getrusage at exit (the shim), bench/loadgen.ts's process.cpuUsage().",
        'Core 1 runs origin + loadgen, so their sum near 100% means core 1 was the limit. "per proxy CPU-s": requests (or new connections) per second of proxy CPU time.',
        '"upstream TLS conns opened": new TLS connections the origin accepted from the proxy during the scenario, warm-up included (resumed sessions in brackets).',
        '"other": CPU time of every other process (idle peers included) and kernel thread in /proc over the window; "steal": hypervisor steal time (/proc/stat), both cores together.',
        'Per-scenario proxy peak RSS: VmHWM summed over its processes after resetting it (clear_refs 5) before the scenario, warm-up included.',
        '',
        cpu,
        '',
        '## TLS on each leg',
        '',
        'Client leg: what the load generator negotiated (wrk through the shim; bench/loadgen.ts counts handshakes only). Origin leg: what the origin accepted from each proxy over the whole bench.',
        '',
        tls,
        '',
        '## Notes',
        '',
        ...(notes.length ? notes.map((n) => `- ${n}`) : ['- none']),
        '',
      ].join('\n');

      const outDir = join(BENCH, 'results');
      mkdirSync(outDir, { recursive: true });
      const json = {
        env,
        versions: vers,
        argv: process.argv.slice(2),
        cpus: NCPU,
        seconds: SECONDS,
        warmup_seconds: WARMUP_SECONDS,
        warmup_all_seconds: WARMUP_ALL_SECONDS,
        connections: CONNS,
        bulk_bytes: BULK_BYTES,
        bulk_runs: BULK_RUNS,
        rounds: ROUNDS,
        workers: WORKERS || null,
        small_request_loadgen: shim ? 'wrk' : 'node',
        pinned: HAS_TASKSET,
        loadavg_before: loadBefore,
        wall_s: Math.round((Date.now() - started) / 100) / 10,
        results,
        targets: checkList,
        notes,
      };
      writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
      writeFileSync(join(outDir, 'latest.md'), md);
      process.stdout.write(`\n${summary}\n\n${checkLines.join('\n')}\n\n${workersSection ? `${workersSection}\n\n` : ''}${obsSection ? `${obsSection}\n\n` : ''}${cpu}\n\n${tls}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
      process.stderr.write(`\nwrote bench/results/latest.json and latest.md (${json.wall_s} s)\n`);
    } finally {
      await stop(origin);
    }
  } finally {
    for (const p of [...running]) await stop(p);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every round of the scenarios run in rounds: the spread behind each median. */
function roundsTable(results: Results, targets: Target[]): string {
  const names = targets.map((t) => t.name).filter((n) => results[n] && !results[n].skipped);
  const lines = [`| scenario | metric | ${names.join(' | ')} |`, `|---|---|${names.map(() => '---').join('|')}|`];
  for (const s of ALL_SCENARIOS) {
    if (roundsFor(s) < 2) continue;
    const metric = s === 'small-1' ? 'p50 µs' : s === 'close' ? 'conns/s' : 'MiB/s';
    const cells = names.map((n) => (results[n]?.rounds?.[s] ?? []).map((r) => (r ? fmt(headline(s, r)) : 'failed')).join(', ') || '–');
    if (cells.every((c) => c === '–')) continue;
    lines.push(`| ${SCENARIO_LABEL[s]} | ${metric}, by round | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

function workersTable(results: Results): string {
  const w = `mtls-proxy-w${WORKERS}`;
  const lines = [`| scenario | metric | mtls-proxy (1 worker, core ${PROXY_CPU}) | mtls-proxy (${WORKERS} workers, cores ${workerCpus(WORKERS)}) | ratio |`, '|---|---|--:|--:|--:|'];
  if (results[w]?.skipped) return `mtls-proxy with \`[server] workers = ${WORKERS}\` did not run: ${oneLine(results[w].skipped)}`;
  for (const s of WORKER_SCENARIOS) {
    const a = scenarioOf(results, 'mtls-proxy', s);
    const b = scenarioOf(results, w, s);
    const unit = s === 'close' ? 'conns' : 'req';
    lines.push(`| ${SCENARIO_LABEL[s]} | ${unit}/s | ${fmt(a?.loadgen.rps)} | ${fmt(b?.loadgen.rps)} | ${fmt(ratio(b?.loadgen.rps, a?.loadgen.rps))} |`);
    lines.push(`| ${SCENARIO_LABEL[s]} | proxy CPU % (all processes) | ${fmt(a?.proxy_cpu_pct)} | ${fmt(b?.proxy_cpu_pct)} | |`);
    lines.push(`| ${SCENARIO_LABEL[s]} | proxy processes | ${fmt(a?.proxy_processes)} | ${fmt(b?.proxy_processes)} | |`);
    lines.push(`| ${SCENARIO_LABEL[s]} | ${unit} per proxy CPU-second | ${fmt(a?.per_proxy_cpu_s)} | ${fmt(b?.per_proxy_cpu_s)} | ${fmt(ratio(b?.per_proxy_cpu_s, a?.per_proxy_cpu_s))} |`);
  }
  return lines.join('\n');
}

/** The observability pairs: the scenario run, then each alternating round; obs / plain. */
function obsPairs(results: Results): Array<{ rps: number; cpu: number | null }> {
  const plain = [{ rps: rpsOf(results, 'mtls-proxy', 'small-50'), per_proxy_cpu_s: perCpuOf(results, 'mtls-proxy', 'small-50') }, ...(results['mtls-proxy']?.obs_rounds ?? [])];
  const obs = [{ rps: rpsOf(results, OBS, 'small-50'), per_proxy_cpu_s: perCpuOf(results, OBS, 'small-50') }, ...(results[OBS]?.obs_rounds ?? [])];
  const out: Array<{ rps: number; cpu: number | null }> = [];
  for (let i = 0; i < Math.min(plain.length, obs.length); i++) {
    const r = ratio(obs[i]!.rps, plain[i]!.rps);
    if (r !== null) out.push({ rps: r, cpu: ratio(obs[i]!.per_proxy_cpu_s, plain[i]!.per_proxy_cpu_s) });
  }
  return out;
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return Math.round((s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2) * 1000) / 1000;
}

function obsTable(results: Results): string {
  if (results[OBS]?.skipped) return `${OBS} did not run: ${oneLine(results[OBS].skipped)}`;
  const lines = ['| scenario | metric | mtls-proxy | mtls-proxy + metrics + request log | ratio |', '|---|---|--:|--:|--:|'];
  for (const s of OBS_SCENARIOS) {
    const a = scenarioOf(results, 'mtls-proxy', s);
    const b = scenarioOf(results, OBS, s);
    lines.push(`| ${SCENARIO_LABEL[s]} | req/s | ${fmt(a?.loadgen.rps)} | ${fmt(b?.loadgen.rps)} | ${fmt(ratio(b?.loadgen.rps, a?.loadgen.rps))} |`);
    lines.push(`| ${SCENARIO_LABEL[s]} | p50 µs | ${fmt(a?.loadgen.p50_us)} | ${fmt(b?.loadgen.p50_us)} | ${fmt(ratio(b?.loadgen.p50_us, a?.loadgen.p50_us))} |`);
    lines.push(`| ${SCENARIO_LABEL[s]} | p99 µs | ${fmt(a?.loadgen.p99_us)} | ${fmt(b?.loadgen.p99_us)} | ${fmt(ratio(b?.loadgen.p99_us, a?.loadgen.p99_us))} |`);
    lines.push(`| ${SCENARIO_LABEL[s]} | req per proxy CPU-second | ${fmt(a?.per_proxy_cpu_s)} | ${fmt(b?.per_proxy_cpu_s)} | ${fmt(ratio(b?.per_proxy_cpu_s, a?.per_proxy_cpu_s))} |`);
    lines.push(`| ${SCENARIO_LABEL[s]} | proxy peak RSS MiB | ${fmt(mib(a?.proxy_peak_rss))} | ${fmt(mib(b?.proxy_peak_rss))} | |`);
  }
  const rounds = (name: string): string => (results[name]?.obs_rounds ?? []).map((r) => fmt(r.rps)).join(', ');
  const pairs = obsPairs(results);
  if (pairs.length > 1) {
    lines.push(`| small GET, ${CONNS} conns, ${pairs.length - 1} more alternating rounds | req/s | ${rounds('mtls-proxy')} | ${rounds(OBS)} | ${pairs.slice(1).map((p) => fmt(p.rps)).join(', ')} |`);
    lines.push(`| small GET, ${CONNS} conns, every pair | median req/s ratio | | | ${fmt(median(pairs.map((p) => p.rps)))} |`);
    lines.push(`| small GET, ${CONNS} conns, every pair | median per-CPU-second ratio | | | ${fmt(median(pairs.flatMap((p) => (p.cpu === null ? [] : [p.cpu]))))} |`);
  }
  const side = results[OBS]?.obs_side ?? [];
  if (side.length > 0) {
    const label = `small GET, side by side on one core, ${CONNS >> 1} conns each, ${side.length} rounds`;
    lines.push(`| ${label} | req/s | ${side.map((r) => fmt(r.plain_rps)).join(', ')} | ${side.map((r) => fmt(r.obs_rps)).join(', ')} | ${side.map((r) => fmt(ratio(r.obs_rps, r.plain_rps))).join(', ')} |`);
    lines.push(`| ${label} | proxy CPU µs per request | ${side.map((r) => fmt(r.plain_cpu_us)).join(', ')} | ${side.map((r) => fmt(r.obs_cpu_us)).join(', ')} | ${side.map((r) => fmt(ratio(r.obs_cpu_us, r.plain_cpu_us))).join(', ')} |`);
    lines.push(`| ${label} | median req/s ratio | | | ${fmt(median(side.map((r) => r.obs_rps / r.plain_rps)))} |`);
  }
  return lines.join('\n');
}

await main();
