// The process's signals (PRODUCT.md "Signals"), for a single-process server and for a cluster
// primary alike: SIGTERM/SIGINT drain then exit 0 (1 if the shutdown itself failed), SIGHUP
// reloads certificates without dropping connections.
import type { Logger } from './log.ts';

export interface SignalTarget {
  readonly logger: Logger;
  shutdown(): Promise<unknown>;
  reload(): Promise<unknown>;
}

export function installSignals(target: SignalTarget): void {
  const stop = (signal: string): void => {
    target.logger.info({ signal }, 'signal received');
    target.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        target.logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => {
    target.logger.info({ signal: 'SIGHUP' }, 'signal received');
    target.reload().catch((err: unknown) => target.logger.error({ err }, 'reload failed'));
  });
}
