// `npm run bench`: mtls-proxy against a direct connection to the origin and against the plain
// Node.js proxy (bench/peers/node-proxy.ts), everything mTLS, everything on loopback.
//
// Layout on a 2-core machine: the proxies on core 0 (the one not under test sits idle), the
// origin and the load generator on core 1. Each scenario runs against direct, mtls-proxy and
// node-proxy back to back. Scenarios: small requests over 1
// and 50 keep-alive connections (BENCH_SECONDS each, default 8, after 1 s of warm-up), a
// 256 MiB download and a 256 MiB upload (one warm-up transfer, then best of BENCH_BULK_RUNS,
// default 2). Writes bench/results/latest.{json,md}.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as connectTcp, createServer as createNetServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevPki } from '../src/pki/dev-pki.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BENCH = join(ROOT, 'bench');
const NODE = process.execPath;
const SECONDS = Number(process.env.BENCH_SECONDS ?? '8');
const WARMUP_SECONDS = 1;
const BULK_BYTES = 256 * 1024 * 1024;
const BULK_RUNS = Number(process.env.BENCH_BULK_RUNS ?? '2');
const PROXY_CPU = '0';
const ORIGIN_CPU = '1';
const LOADGEN_CPU = '1';
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const HAS_TASKSET = spawnSync('taskset', ['-V']).status === 0;

if (!Number.isFinite(SECONDS) || SECONDS <= 0) throw new Error(`BENCH_SECONDS must be a positive number, got ${process.env.BENCH_SECONDS}`);
if (!Number.isInteger(BULK_RUNS) || BULK_RUNS < 1) throw new Error(`BENCH_BULK_RUNS must be a positive integer, got ${process.env.BENCH_BULK_RUNS}`);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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
/** The PKI's temp folder, removed on every way out. */
let tempDir: string | null = null;

function start(name: string, cpu: string, args: string[]): Proc {
  const argv = HAS_TASKSET ? ['-c', cpu, NODE, ...args] : args;
  // taskset execs the command, so the pid is the node process's own.
  const child = spawn(HAS_TASKSET ? 'taskset' : NODE, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
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
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) throw new Error(`${proc.name} exited (${proc.child.exitCode}) before it was ready:\n${proc.err.slice(-2000)}`);
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

async function stop(proc: Proc): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGTERM');
  const t = setTimeout(() => proc.child.kill('SIGKILL'), 5000);
  await proc.exited;
  clearTimeout(t);
}

function killAll(): void {
  for (const p of running) p.child.kill('SIGKILL');
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

// ---- /proc -------------------------------------------------------------------------------

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ": state is field 3, utime 14, stime 15 (proc(5)), i.e. index 11, 12.
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/**
 * CPU time (utime+stime) of every other process and kernel thread on the machine, seconds, by
 * pid, leaving out the ones in `ours`. A process that starts inside the window counts in full;
 * one that starts and exits inside it is missed (cutime would catch it, but also credits a
 * parent with all of a long-lived child's time when it reaps it), so this can only undercount.
 */
function otherCpuSeconds(ours: Set<number>): Map<number, number> {
  const out = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (ours.has(pid)) continue;
    const t = cpuSeconds(pid);
    if (!Number.isNaN(t)) out.set(pid, t);
  }
  return out;
}

/** Steal time of the whole machine, seconds (/proc/stat): CPU the hypervisor gave to someone else. */
function stealSeconds(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  return Number(line.trim().split(/\s+/)[8] ?? 0) / CLK_TCK;
}

function otherCpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, t] of after) sum += t - (before.get(pid) ?? 0);
  return sum;
}

function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Resets VmHWM to the current RSS (proc(5), clear_refs "5"), so a peak can be taken per scenario. */
function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

// ---- the bench ---------------------------------------------------------------------------

type TargetName = 'direct' | 'mtls-proxy' | 'node-proxy';
type ScenarioName = 'small-1' | 'small-50' | 'download' | 'upload';
const TARGETS: TargetName[] = ['direct', 'mtls-proxy', 'node-proxy'];
const SCENARIOS: ScenarioName[] = ['small-1', 'small-50', 'download', 'upload'];

interface LoadgenOutput {
  mode: string;
  rps?: number;
  p50_us?: number;
  p99_us?: number;
  requests?: number;
  best_mib_per_s?: number;
  mib_per_s?: number[];
  errors: number;
  error_samples: string[];
  loadgen_cpu_pct: number;
}

interface ScenarioResult {
  loadgen: LoadgenOutput;
  /** Length of the loadgen's measured window, seconds. */
  wall_s: number;
  /** CPU use over the measured window, in % of one core. */
  proxy_cpu_pct: number | null;
  origin_cpu_pct: number;
  /** Busy CPU of everything else on the machine (other users, kernel threads), % of one core. */
  other_cpu_pct: number;
  /** Hypervisor steal time over the window, all cores together, % of one core. */
  steal_pct: number;
  /** Proxy VmHWM during this scenario alone (bytes). */
  proxy_peak_rss: number | null;
}

interface TargetResult {
  scenarios: Partial<Record<ScenarioName, ScenarioResult>>;
  idle_rss: number | null;
  rss_after: number | null;
  peak_rss: number | null;
  proxy_log_tail?: string;
}

function loadgenArgs(dir: string, port: number, scenario: ScenarioName): string[] {
  const base = [join(BENCH, 'loadgen.ts'), '--dir', dir, '--port', String(port)];
  switch (scenario) {
    case 'small-1':
      return [...base, '--mode', 'small', '--connections', '1', '--seconds', String(SECONDS), '--warmup', String(WARMUP_SECONDS)];
    case 'small-50':
      return [...base, '--mode', 'small', '--connections', '50', '--seconds', String(SECONDS), '--warmup', String(WARMUP_SECONDS)];
    case 'download':
    case 'upload':
      return [...base, '--mode', scenario, '--bytes', String(BULK_BYTES), '--runs', String(BULK_RUNS), '--warmup-runs', '1'];
  }
}

async function runScenario(dir: string, port: number, scenario: ScenarioName, origin: Proc, proxy: Proc | null): Promise<ScenarioResult> {
  const peakReset = proxy ? resetPeak(proxy.pid) : false;
  // CPU of the proxy and the origin is sampled when the loadgen says its measured window
  // begins and ends (a line on its stderr), so warm-up and process start-up are left out.
  // And every other process's CPU time: someone else's load disturbs the numbers.
  const sample = (): { t: number; proxy: number; origin: number; loadgen: number; steal: number; other: Map<number, number> } => ({
    t: performance.now(),
    proxy: proxy ? cpuSeconds(proxy.pid) : 0,
    origin: cpuSeconds(origin.pid),
    loadgen: cpuSeconds(lg.pid),
    steal: stealSeconds(),
    other: otherCpuSeconds(new Set([process.pid, origin.pid, lg.pid, ...(proxy ? [proxy.pid] : [])])),
  });
  let begin: ReturnType<typeof sample> | null = null;
  let end: ReturnType<typeof sample> | null = null;
  const lg = start(`loadgen ${scenario}`, LOADGEN_CPU, loadgenArgs(dir, port, scenario));
  lg.child.stderr?.on('data', () => {
    if (!begin && lg.err.includes('{"mark":"begin"}')) begin = sample();
    if (!end && lg.err.includes('{"mark":"end"}')) end = sample();
  });
  const code = await lg.exited;
  if (code !== 0) throw new Error(`loadgen ${scenario} exited ${code}:\n${lg.err.slice(-2000)}`);
  const loadgen = JSON.parse(lg.out.trim()) as LoadgenOutput;
  const b = begin as ReturnType<typeof sample> | null;
  const e = end as ReturnType<typeof sample> | null;
  if (!b || !e) throw new Error(`loadgen ${scenario} did not mark its measured window:\n${lg.err.slice(-2000)}`);
  const wall = (e.t - b.t) / 1000;
  const pct = (s: number): number => Math.round((s / wall) * 1000) / 10;
  return {
    loadgen,
    wall_s: Math.round(wall * 100) / 100,
    proxy_cpu_pct: proxy ? pct(e.proxy - b.proxy) : null,
    origin_cpu_pct: pct(e.origin - b.origin),
    other_cpu_pct: pct(otherCpuDelta(b.other, e.other)),
    steal_pct: pct(e.steal - b.steal),
    proxy_peak_rss: proxy && peakReset ? memory(proxy.pid).hwm : null,
  };
}

function mtlsProxyConfig(dir: string, port: number, originPort: number): string {
  const path = join(dir, 'mtls-proxy.toml');
  writeFileSync(
    path,
    `# bench config: request logging off (level warn, no [request_log]), no admin listener
[server]
drain_timeout = "1s"

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
`,
  );
  return path;
}

async function startTarget(target: TargetName, dir: string, originPort: number): Promise<{ port: number; proxy: Proc | null }> {
  if (target === 'direct') return { port: originPort, proxy: null };
  if (target === 'mtls-proxy') {
    // At log level warn the "listening" line (info) is not written: pick the port here.
    const port = await freePort();
    const cfg = mtlsProxyConfig(dir, port, originPort);
    const proxy = start('mtls-proxy', PROXY_CPU, ['--max-semi-space-size=1', join(ROOT, 'bin', 'mtls-proxy.js'), 'start', '-c', cfg]);
    await waitListening(proxy, port);
    return { port, proxy };
  }
  const proxy = start('node-proxy', PROXY_CPU, [join(BENCH, 'peers', 'node-proxy.ts'), '--dir', dir, '--upstream', `127.0.0.1:${originPort}`]);
  const m = await waitFor(proxy, /\{"listening":(\d+)\}/);
  return { port: Number(m[1]), proxy };
}

/**
 * Both proxies run for the whole bench (pinned to core 0, the one not measured sits idle), and
 * each scenario is measured against direct, mtls-proxy and node-proxy back to back: the VM's
 * speed drifts over a minute (2x on the same quiet machine between runs), so targets measured
 * close together compare better than targets measured a minute apart.
 */
async function benchAll(dir: string, origin: Proc, originPort: number): Promise<Record<TargetName, TargetResult>> {
  const results = {} as Record<TargetName, TargetResult>;
  const live = {} as Record<TargetName, { port: number; proxy: Proc | null }>;
  try {
    for (const t of TARGETS) {
      live[t] = await startTarget(t, dir, originPort);
      results[t] = { scenarios: {}, idle_rss: null, rss_after: null, peak_rss: null };
    }
    await sleep(500);
    for (const t of TARGETS) {
      const proxy = live[t].proxy;
      if (proxy) results[t].idle_rss = memory(proxy.pid).rss;
    }
    for (const s of SCENARIOS) {
      for (const t of TARGETS) {
        process.stderr.write(`  ${s} ${t} ...`);
        const r = await runScenario(dir, live[t].port, s, origin, live[t].proxy);
        results[t].scenarios[s] = r;
        const lg = r.loadgen;
        const headline = lg.mode === 'small' ? `${lg.rps} req/s, p99 ${lg.p99_us} µs` : `${lg.best_mib_per_s} MiB/s`;
        process.stderr.write(` ${headline}${lg.errors ? `, ${lg.errors} ERRORS: ${lg.error_samples[0]}` : ''}\n`);
      }
    }
    await sleep(500);
    for (const t of TARGETS) {
      const proxy = live[t].proxy;
      if (!proxy) continue;
      const result = results[t];
      result.rss_after = memory(proxy.pid).rss;
      const peaks = SCENARIOS.map((sc) => result.scenarios[sc]?.proxy_peak_rss ?? 0);
      result.peak_rss = Math.max(memory(proxy.pid).hwm, result.idle_rss ?? 0, ...peaks);
    }
  } finally {
    for (const t of TARGETS) {
      const proxy = live[t]?.proxy;
      if (!proxy) continue;
      // Anything at warn or above (request logging is off): worth a look when it is not empty.
      if (results[t] && proxy.err.trim()) results[t].proxy_log_tail = proxy.err.slice(-4000);
      await stop(proxy);
    }
  }
  return results;
}

// ---- report ------------------------------------------------------------------------------

const SCENARIO_LABEL: Record<ScenarioName, string> = {
  'small-1': 'small GET, 1 conn',
  'small-50': 'small GET, 50 conns',
  download: '256 MiB download',
  upload: '256 MiB upload',
};

type Results = Record<TargetName, TargetResult>;

interface Row {
  scenario: string;
  metric: string;
  values: Record<TargetName, number | null>;
  /** Higher is better (throughput) or lower (latency, memory): a ratio is printed either way. */
  better: 'higher' | 'lower';
}

function rows(results: Results): Row[] {
  const pick = (s: ScenarioName, f: (lg: LoadgenOutput) => number | undefined): Record<TargetName, number | null> => {
    const v = {} as Record<TargetName, number | null>;
    for (const t of TARGETS) v[t] = f(results[t].scenarios[s]?.loadgen ?? ({} as LoadgenOutput)) ?? null;
    return v;
  };
  const out: Row[] = [];
  for (const s of ['small-1', 'small-50'] as const) {
    out.push({ scenario: SCENARIO_LABEL[s], metric: 'req/s', values: pick(s, (l) => l.rps), better: 'higher' });
    out.push({ scenario: SCENARIO_LABEL[s], metric: 'p50 µs', values: pick(s, (l) => l.p50_us), better: 'lower' });
    out.push({ scenario: SCENARIO_LABEL[s], metric: 'p99 µs', values: pick(s, (l) => l.p99_us), better: 'lower' });
  }
  for (const s of ['download', 'upload'] as const) {
    out.push({ scenario: SCENARIO_LABEL[s], metric: `MiB/s (best of ${BULK_RUNS}, after 1 warm-up)`, values: pick(s, (l) => l.best_mib_per_s), better: 'higher' });
  }
  const mib = (n: number | null): number | null => (n === null ? null : Math.round((n / 2 ** 20) * 10) / 10);
  out.push({ scenario: 'proxy memory', metric: 'idle RSS MiB', values: { direct: null, 'mtls-proxy': mib(results['mtls-proxy'].idle_rss), 'node-proxy': mib(results['node-proxy'].idle_rss) }, better: 'lower' });
  out.push({ scenario: 'proxy memory', metric: 'peak RSS MiB', values: { direct: null, 'mtls-proxy': mib(results['mtls-proxy'].peak_rss), 'node-proxy': mib(results['node-proxy'].peak_rss) }, better: 'lower' });
  const errs = {} as Record<TargetName, number | null>;
  for (const t of TARGETS) errs[t] = SCENARIOS.reduce((n, s) => n + (results[t].scenarios[s]?.loadgen.errors ?? 0), 0);
  out.push({ scenario: 'all', metric: 'errors', values: errs, better: 'lower' });
  return out;
}

const fmt = (n: number | null): string => (n === null || Number.isNaN(n) ? '–' : n >= 100 ? String(Math.round(n)) : String(n));
const ratio = (a: number | null, b: number | null): number | null => (a === null || b === null || b === 0 ? null : Math.round((a / b) * 100) / 100);

function table(results: Results): string {
  const lines = [
    '| scenario | metric | direct | mtls-proxy | node-proxy | mtls-proxy / direct | mtls-proxy / node-proxy |',
    '|---|---|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows(results)) {
    const m = r.values['mtls-proxy'];
    const ratioCell = (other: number | null): string => (r.metric === 'errors' ? '' : fmt(ratio(m, other)));
    lines.push(`| ${r.scenario} | ${r.metric} | ${fmt(r.values.direct)} | ${fmt(m)} | ${fmt(r.values['node-proxy'])} | ${ratioCell(r.values.direct)} | ${ratioCell(r.values['node-proxy'])} |`);
  }
  return lines.join('\n');
}

function cpuTable(results: Results): string {
  const lines = [
    '| target | scenario | loadgen CPU % | origin CPU % | proxy CPU % | other CPU % | steal % | proxy peak RSS MiB |',
    '|---|---|--:|--:|--:|--:|--:|--:|',
  ];
  for (const t of TARGETS) {
    for (const s of SCENARIOS) {
      const r = results[t].scenarios[s];
      if (!r) continue;
      const peak = r.proxy_peak_rss === null ? null : Math.round((r.proxy_peak_rss / 2 ** 20) * 10) / 10;
      lines.push(`| ${t} | ${SCENARIO_LABEL[s]} | ${fmt(r.loadgen.loadgen_cpu_pct)} | ${fmt(r.origin_cpu_pct)} | ${fmt(r.proxy_cpu_pct)} | ${fmt(r.other_cpu_pct)} | ${fmt(r.steal_pct)} | ${fmt(peak)} |`);
    }
  }
  return lines.join('\n');
}

interface Target {
  name: string;
  value: number | null;
  threshold: number;
  pass: boolean;
}

function targets(results: Results): Target[] {
  const dl = (t: TargetName): number | null => results[t].scenarios.download?.loadgen.best_mib_per_s ?? null;
  const rps = (t: TargetName): number | null => results[t].scenarios['small-50']?.loadgen.rps ?? null;
  const streaming = ratio(dl('mtls-proxy'), dl('direct'));
  const small = ratio(rps('mtls-proxy'), rps('node-proxy'));
  return [
    { name: 'streaming: 256 MiB download, mtls-proxy / direct MiB/s', value: streaming, threshold: 0.8, pass: streaming !== null && streaming >= 0.8 },
    { name: 'small requests, 50 conns: mtls-proxy / node-proxy req/s', value: small, threshold: 1.5, pass: small !== null && small >= 1.5 },
  ];
}

function sanity(results: Results): string[] {
  const notes: string[] = [];
  for (const t of TARGETS) {
    for (const s of SCENARIOS) {
      const lg = results[t].scenarios[s]?.loadgen;
      if (!lg) continue;
      if (lg.errors) notes.push(`${t} ${s}: ${lg.errors} error(s), e.g. ${lg.error_samples.slice(0, 3).join(' | ')}`);
      const v = lg.mode === 'small' ? lg.rps : lg.best_mib_per_s;
      if (!v) notes.push(`${t} ${s}: zero throughput`);
      const direct = results.direct.scenarios[s]?.loadgen;
      const d = direct ? (direct.mode === 'small' ? direct.rps : direct.best_mib_per_s) : undefined;
      if (t !== 'direct' && v && d && v > d) notes.push(`${t} ${s}: faster than direct (${v} > ${d})`);
      const other = results[t].scenarios[s]?.other_cpu_pct ?? 0;
      if (other >= 10) notes.push(`${t} ${s}: other processes used ${other}% of a core during the run: numbers disturbed`);
      const steal = results[t].scenarios[s]?.steal_pct ?? 0;
      if (steal >= 5) notes.push(`${t} ${s}: hypervisor steal ${steal}% of a core during the run: numbers disturbed`);
      if (lg.loadgen_cpu_pct >= 90) notes.push(`${t} ${s}: loadgen at ${lg.loadgen_cpu_pct}% of a core: it may be the bottleneck`);
    }
  }
  return notes;
}

function gitCommit(): string {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' });
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src', 'bin'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== '';
  return `${r.stdout.trim()}${dirty ? ' (+ uncommitted changes in src/ or bin/)' : ''}`;
}

// ---- main --------------------------------------------------------------------------------

async function main(): Promise<void> {
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

    process.stderr.write(`bench: ${SECONDS} s per small-request scenario (+${WARMUP_SECONDS} s warm-up), ${BULK_RUNS} x 256 MiB per bulk scenario (+1 warm-up transfer)${HAS_TASKSET ? '' : ' (taskset missing: NOT pinned)'}\n`);
    const origin = start('origin', ORIGIN_CPU, [join(BENCH, 'origin.ts'), '--dir', dir]);
    try {
      const originPort = Number((await waitFor(origin, /\{"listening":(\d+)\}/))[1]);
      const results: Results = await benchAll(dir, origin, originPort);

      const summary = table(results);
      const cpu = cpuTable(results);
      const checks = targets(results);
      const notes = sanity(results);
      const checkLines = checks.map((c) => `- ${c.pass ? 'PASS' : 'FAIL'} ${c.name}: ${fmt(c.value)} (target >= ${c.threshold})`);
      const env = `Node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? 'unknown CPU'}, commit ${gitCommit()}, ${new Date().toISOString()}`;
      const md = [
        '# mtls-proxy bench: latest run',
        '',
        env,
        '',
        `Command: \`npm run bench\` (BENCH_SECONDS=${SECONDS}, BENCH_BULK_RUNS=${BULK_RUNS}). Proxies on core 0 (one measured, the other idle); origin and loadgen share core 1; each scenario runs direct, mtls-proxy, node-proxy back to back${HAS_TASKSET ? '' : ' (taskset missing: not pinned)'}.`,
        'mtls-proxy ran with `--max-semi-space-size=1` (as its bin does), log level warn, no request log, no admin listener;',
        'node-proxy with default Node flags. MiB/s = 2^20 bytes/s. Ratios < 1 on latency/memory rows mean mtls-proxy is lower (better).',
        '',
        summary,
        '',
        '## Targets (issue 2)',
        '',
        ...checkLines,
        '',
        '## Where the CPU went',
        '',
        'CPU time over the loadgen\'s measured window (after warm-up), in % of one core: origin and proxy from /proc/<pid>/stat (utime+stime, sampled when the',
        'loadgen marks the window on its stderr), the loadgen from its own process.cpuUsage(). Core 1 runs origin + loadgen, so their sum near 100% means core 1 was the limit.',
        '"other": CPU time of every other process (and kernel thread) in /proc over the window (short-lived ones are missed): load from anything else, e.g. someone\'s test run.',
        '"steal": time the hypervisor ran something else while this VM wanted the CPU (/proc/stat), both cores together.',
        'Per-scenario proxy peak RSS: VmHWM after resetting it (clear_refs 5) before the scenario, warm-up included.',
        '',
        cpu,
        '',
        '## Notes',
        '',
        ...(notes.length ? notes.map((n) => `- ${n}`) : ['- none: all runs error-free, every proxied number at or below direct, loadgen below 90% of a core, other load below 10% and steal below 5% of a core']),
        '',
      ].join('\n');

      const outDir = join(BENCH, 'results');
      mkdirSync(outDir, { recursive: true });
      const json = {
        env,
        node: process.version,
        cpus: cpus().length,
        seconds: SECONDS,
        warmup_seconds: WARMUP_SECONDS,
        bulk_bytes: BULK_BYTES,
        bulk_runs: BULK_RUNS,
        pinned: HAS_TASKSET,
        loadavg_before: loadBefore,
        wall_s: Math.round((Date.now() - started) / 100) / 10,
        results,
        targets: checks,
        notes,
      };
      writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
      writeFileSync(join(outDir, 'latest.md'), md);
      process.stdout.write(`\n${summary}\n\n${checkLines.join('\n')}\n\n${cpu}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
      process.stderr.write(`\nwrote bench/results/latest.json and latest.md (${json.wall_s} s)\n`);
    } finally {
      await stop(origin);
    }
  } finally {
    for (const p of [...running]) await stop(p);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
