// pino logger: JSON by default, pino-pretty on request. One instance per process.
import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';
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
  return destination ? pino(options, destination) : pino(options, pino.destination({ fd: 2, sync: false }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
