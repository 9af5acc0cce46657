// pino logger: JSON by default, pino-pretty on request. One instance per process.
import pino, { type Logger } from 'pino';
import type { LogConfig } from './config/types.ts';

export type { Logger };

export function createLogger(cfg: LogConfig, destination?: NodeJS.WritableStream): Logger {
  const options: pino.LoggerOptions = {
    level: cfg.level,
    base: { pid: process.pid },
    // Secrets never reach logs: redact anything that could carry one.
    redact: { paths: ['*.password', '*.password_hash', '*.passwordHash', '*.key', 'req.headers.authorization'], censor: '[redacted]' },
  };
  if (cfg.format === 'pretty') {
    return pino(options, pino.transport({ target: 'pino-pretty', options: { colorize: false, destination: 2 } }));
  }
  return destination ? pino(options, destination) : pino(options, pino.destination({ fd: 2, sync: false }));
}

export const silentLogger: Logger = pino({ level: 'silent' });
