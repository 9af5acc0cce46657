// pino logger: JSON by default, pino-pretty on request. One instance per process.
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
import sonicBoom, { type SonicBoom } from 'sonic-boom';
import type { LogConfig } from './config/types.ts';

type PrettyFactory = (opts: { colorize: boolean; destination: number | NodeJS.WritableStream }) => NodeJS.WritableStream;

/**
 * pino-pretty, loaded only when asked for, and run in-process as a stream: pino.transport
 * would find its worker file beside pino's own sources, which a bundled build (scripts/
 * bundle.mjs) moves.
 */
function prettyStream(destination: number | NodeJS.WritableStream): NodeJS.WritableStream {
  const mod = createRequire(import.meta.url)('pino-pretty') as PrettyFactory | { default: PrettyFactory };
  const build = typeof mod === 'function' ? mod : mod.default;
  return build({ colorize: false, destination });
}

export type { Logger };

export function createLogger(cfg: LogConfig, destination?: NodeJS.WritableStream): Logger {
  const options: pino.LoggerOptions = {
    level: cfg.level,
    base: { pid: process.pid },
    // Secrets never reach logs: redact anything that could carry one.
    redact: { paths: ['*.password', '*.password_hash', '*.passwordHash', '*.key', 'req.headers.authorization'], censor: '[redacted]' },
  };
  if (cfg.format === 'pretty') return pino(options, prettyStream(destination ?? 2));
  return pino(options, destination ?? stderr());
}

/**
 * stderr through sonic-boom, asynchronously (every request is logged at info, so lines are
 * batched into few writes under load), as pino.destination makes it, without reading
 * worker_threads' isMainThread: the proxy always logs from a process's main thread, and that
 * read is what loads node:worker_threads into an idle proxy (scripts/build.mjs, issue 5).
 * As pino does: lines still buffered when the process exits are written synchronously, and a
 * closed stderr (EPIPE) stops logging instead of crashing the proxy.
 */
function stderr(): pino.DestinationStream {
  const dest = new SonicBoomClass({ fd: 2, sync: false });
  const onError = (err: NodeJS.ErrnoException): void => {
    if (err.code === 'EPIPE') {
      dest.write = () => true;
      dest.flushSync = () => {};
      return;
    }
    dest.removeListener('error', onError);
    dest.emit('error', err);
  };
  dest.on('error', onError);
  flushAtExit.add(new WeakRef(dest));
  if (flushAtExit.size === 1) process.on('exit', flushAll);
  return dest;
}

// sonic-boom is CommonJS: the default import is its class (its types declare it as a named export)
const SonicBoomClass = sonicBoom as unknown as typeof SonicBoom;
const flushAtExit = new Set<WeakRef<SonicBoom>>();
function flushAll(): void {
  for (const ref of flushAtExit) {
    const dest = ref.deref();
    if (dest === undefined) continue;
    try {
      dest.flushSync();
    } catch {
      // destroyed, or stderr gone at exit: nothing left to tell it
    }
  }
}

/** Discards everything: a logger for code paths run without one (tests, one-shot commands). */
export const silentLogger: Logger = pino({ level: 'silent' }, { write: () => {} });
