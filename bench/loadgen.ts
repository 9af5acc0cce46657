// Load generator, run as its own process, presenting the bench client certificate (mTLS end to
// end) over raw `tls.connect` sockets. Prints one JSON object on stdout.
//
//   node bench/loadgen.ts --dir <pki dir> --port P --mode small    --connections 50 --seconds 8
//   node bench/loadgen.ts --dir <pki dir> --port P --mode small    --connections 50 --close
//   node bench/loadgen.ts --dir <pki dir> --port P --mode download --bytes 268435456 --runs 2
//   node bench/loadgen.ts --dir <pki dir> --port P --mode upload   --bytes 268435456 --runs 2
//
// small: each of N keep-alive connections sends `GET /small` and waits for the whole response
// before sending the next (closed loop, no pipelining). The first --warmup seconds are not
// counted; after that, every request that completes within --seconds is. With --close each
// request says `Connection: close` and goes on a new TLS connection (a full handshake with the
// client certificate: Node's TLS client resumes only when given a session, and it is not).
// bench/run.ts uses wrk for the small-request scenarios when it can, and this as the fallback.
// download/upload: --warmup-runs uncounted transfers (default 1: the first transfer of a fresh
// process runs before the JIT has settled and is 20-40% slower), then --runs sequential
// transfers on the same connection, each timed from the request's first byte written to the
// response's last byte read. MiB/s = 2^20 bytes per second.
//
// The loadgen's own CPU time (process.cpuUsage) over the measured window is reported, so a
// reader can tell when the loadgen rather than the target was the bottleneck.
import { connect, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { ResponseReader, type Response } from './response-reader.ts';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    servername: { type: 'string', default: 'localhost' },
    mode: { type: 'string', default: 'small' },
    connections: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '1' },
    bytes: { type: 'string', default: String(256 * 1024 * 1024) },
    runs: { type: 'string', default: '2' },
    'warmup-runs': { type: 'string', default: '1' },
    path: { type: 'string', default: '/small' },
    close: { type: 'boolean', default: false },
  },
});
if (!values.dir || !values.port) {
  process.stderr.write('usage: node bench/loadgen.ts --dir <pki dir> --port N [--mode small|download|upload] ...\n');
  process.exit(2);
}
const dir = values.dir;
const tlsOptions = {
  host: values.host,
  port: Number(values.port),
  servername: values.servername,
  ca: readFileSync(join(dir, 'ca.pem')),
  cert: readFileSync(join(dir, 'client.pem')),
  key: readFileSync(join(dir, 'client-key.pem')),
};

function open(): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect(tlsOptions, () => {
      socket.off('error', reject);
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Tells a parent (bench/run.ts) on stderr when the measured window begins and ends. */
function mark(what: 'begin' | 'end'): void {
  process.stderr.write(`${JSON.stringify({ mark: what })}\n`);
}

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

// ---- small requests ----------------------------------------------------------------------

interface SmallResult {
  mode: 'small';
  connections: number;
  close: boolean;
  /** TLS handshakes completed, and how many of them resumed a session. */
  handshakes: number;
  resumed: number;
  seconds: number;
  requests: number;
  rps: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
  errors: number;
  error_samples: string[];
  loadgen_cpu_pct: number;
}

async function small(): Promise<SmallResult> {
  const connections = Number(values.connections);
  const warmupMs = Number(values.warmup) * 1000;
  const measureMs = Number(values.seconds) * 1000;
  const close = values.close === true;
  const req = Buffer.from(`GET ${values.path} HTTP/1.1\r\nHost: ${values.servername}\r\nUser-Agent: mtls-proxy-bench\r\n${close ? 'Connection: close\r\n' : ''}\r\n`);
  let handshakes = 0;
  let resumed = 0;
  const latencies: number[] = [];
  const errorSamples: string[] = [];
  let errors = 0;
  const t0 = performance.now();
  const measureFrom = t0 + warmupMs;
  const measureTo = measureFrom + measureMs;
  let cpuFrom = 0;
  let cpuTo = 0;
  let measuredRequests = 0;

  const fail = (msg: string): void => {
    errors++;
    if (errorSamples.length < 10) errorSamples.push(msg);
  };

  // One closed-loop client: send, wait for the whole response, repeat until measureTo.
  // Errors are counted (only inside the measured window) and the connection is replaced.
  const client = async (): Promise<void> => {
    while (performance.now() < measureTo) {
      let socket: TLSSocket;
      try {
        socket = await open();
        handshakes++;
        if (socket.isSessionReused()) resumed++;
      } catch (err) {
        if (performance.now() >= measureFrom) fail(`connect: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      await new Promise<void>((done) => {
        let sentAt = 0;
        let finished = false;
        const end = (): void => {
          if (finished) return;
          finished = true;
          socket.destroy();
          done();
        };
        const send = (): void => {
          sentAt = performance.now();
          socket.write(req);
        };
        const reader = new ResponseReader((r) => {
          const now = performance.now();
          if (sentAt >= measureFrom && now <= measureTo) {
            if (r.status === 200) {
              latencies.push(Math.round((now - sentAt) * 1000));
              measuredRequests++;
            } else {
              fail(`status ${r.status}`);
            }
          }
          if (now >= measureTo) return end();
          if (close || r.close) return end();
          send();
        });
        socket.on('data', (chunk: Buffer) => {
          try {
            reader.push(chunk);
          } catch (err) {
            if (performance.now() >= measureFrom) fail(`parse: ${(err as Error).message}`);
            end();
          }
        });
        socket.on('error', (err) => {
          if (!finished && performance.now() >= measureFrom && performance.now() < measureTo) fail(`socket: ${err.message}`);
        });
        socket.on('close', () => {
          if (!finished && performance.now() >= measureFrom && performance.now() < measureTo) {
            fail(reader.busy ? 'connection closed mid-response' : 'connection closed while waiting for a response');
          }
          end();
        });
        send();
      });
    }
  };

  setTimeout(() => {
    cpuFrom = cpuMicros();
    mark('begin');
  }, warmupMs).unref();
  const endTimer = setTimeout(() => {
    cpuTo = cpuMicros();
    mark('end');
  }, warmupMs + measureMs);
  endTimer.unref();
  await Promise.all(Array.from({ length: connections }, () => client()));
  if (cpuTo === 0) {
    // The clients saw measureTo pass before the timer fired.
    clearTimeout(endTimer);
    cpuTo = cpuMicros();
    mark('end');
  }

  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => (latencies.length ? (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0) : 0);
  return {
    mode: 'small',
    connections,
    close,
    handshakes,
    resumed,
    seconds: measureMs / 1000,
    requests: measuredRequests,
    rps: Math.round(measuredRequests / (measureMs / 1000)),
    p50_us: pct(0.5),
    p99_us: pct(0.99),
    max_us: latencies.at(-1) ?? 0,
    errors,
    error_samples: errorSamples,
    loadgen_cpu_pct: Math.round(((cpuTo - cpuFrom) / (measureMs * 1000)) * 1000) / 10,
  };
}

// ---- bulk transfers ----------------------------------------------------------------------

interface BulkResult {
  mode: 'download' | 'upload';
  bytes: number;
  runs: number;
  /** MiB/s (2^20 bytes per second) of each run, in order. */
  mib_per_s: number[];
  best_mib_per_s: number;
  errors: number;
  error_samples: string[];
  loadgen_cpu_pct: number;
}

const BLOCK = Buffer.alloc(64 * 1024, 'y');

function transfer(socket: TLSSocket, mode: 'download' | 'upload', bytes: number): Promise<Response> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const reader = new ResponseReader((r) => {
      cleanup();
      resolve(r);
    });
    const onData = (chunk: Buffer): void => {
      try {
        reader.push(chunk);
      } catch (err) {
        cleanup();
        reject(err);
      }
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error(reader.busy ? 'connection closed mid-response' : 'connection closed before a response'));
    };
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    if (mode === 'download') {
      socket.write(`GET /download?bytes=${bytes} HTTP/1.1\r\nHost: ${values.servername}\r\n\r\n`);
      return;
    }
    socket.write(`POST /upload HTTP/1.1\r\nHost: ${values.servername}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${bytes}\r\n\r\n`);
    let left = bytes;
    const pump = (): void => {
      while (left > 0 && !socket.destroyed) {
        const n = Math.min(left, BLOCK.length);
        left -= n;
        if (!socket.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
          socket.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}

async function bulk(mode: 'download' | 'upload'): Promise<BulkResult> {
  const bytes = Number(values.bytes);
  const runs = Number(values.runs);
  const rates: number[] = [];
  const errorSamples: string[] = [];
  let errors = 0;
  let busyMicros = 0;
  let cpu = 0;
  let socket: TLSSocket | null = null;
  const warmups = Number(values['warmup-runs']);
  for (let i = -warmups; i < runs; i++) {
    if (i === 0) mark('begin');
    try {
      socket ??= await open();
      const c0 = cpuMicros();
      const t0 = performance.now();
      const r = await transfer(socket, mode, bytes);
      const seconds = (performance.now() - t0) / 1000;
      const moved = mode === 'download' ? r.bodyBytes : Number(r.bodyStart);
      if (r.status !== 200 || moved !== bytes) throw new Error(`status ${r.status}, ${moved} of ${bytes} bytes`);
      if (i >= 0) {
        cpu += cpuMicros() - c0;
        busyMicros += seconds * 1e6;
        rates.push(Math.round((bytes / 2 ** 20 / seconds) * 10) / 10);
      }
      if (r.close) {
        socket.destroy();
        socket = null;
      }
    } catch (err) {
      errors++;
      errorSamples.push((err as Error).message);
      socket?.destroy();
      socket = null;
    }
  }
  if (runs <= 0) mark('begin');
  mark('end');
  socket?.destroy();
  return {
    mode,
    bytes,
    runs,
    mib_per_s: rates,
    best_mib_per_s: rates.length ? Math.max(...rates) : 0,
    errors,
    error_samples: errorSamples,
    loadgen_cpu_pct: busyMicros ? Math.round((cpu / busyMicros) * 1000) / 10 : 0,
  };
}

const mode = values.mode;
let result: SmallResult | BulkResult;
if (mode === 'small') result = await small();
else if (mode === 'download' || mode === 'upload') result = await bulk(mode);
else {
  process.stderr.write(`unknown --mode ${mode}\n`);
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(result)}\n`);
