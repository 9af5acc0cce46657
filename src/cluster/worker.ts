// One worker of several (server.workers > 1): the data plane. Its own ProxyServer loads the
// TLS material, runs pools, health checks and the listeners (on a fixed port, one SO_REUSEPORT
// socket per worker; on port 0, node:cluster's shared socket: see Listener.listen) and keeps a
// metrics registry; the primary owns the admin listener and the request log. Finished
// requests reach the primary in batches; the admin API's questions are answered from this
// process's state.
import cluster from 'node:cluster';
import { ConfigError } from '../errors.ts';
import type { RequestRecord } from '../http/context.ts';
import { createLogger, type Logger } from '../log.ts';
import { ProxyServer } from '../server.ts';
import type { Config } from '../config/types.ts';
import { isToWorker, type Answers, type Question, type StartError, type ToPrimary } from './protocol.ts';

// A batch every 100 ms or every 200 rows, whichever comes first: one IPC message (and one
// structured-clone serialization) per batch, never per request.
const BATCH_ROWS = 200;
const BATCH_INTERVAL_MS = 100;
// Batches handed to the channel whose bytes the pipe has not taken yet. A primary that stops
// reading would otherwise let them pile up in this process's memory: past this bound new
// records are dropped and counted, as the request log's own queue does.
const MAX_UNSENT_BATCHES = 64;

function send(msg: ToPrimary): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) return resolve();
    // The callback runs once the message is written to the pipe (or the channel failed).
    process.send(msg, undefined, undefined, () => resolve());
  });
}

/** Collects finished requests and ships them to the primary in batches. */
class RecordSender {
  readonly #log: Logger;
  #rows: RequestRecord[] = [];
  #unsent = 0;
  #dropped = 0;
  #timer: NodeJS.Timeout | null = null;
  #soon: NodeJS.Immediate | null = null;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(log: Logger) {
    this.#log = log;
  }

  readonly push = (r: RequestRecord): void => {
    if (this.#unsent >= MAX_UNSENT_BATCHES) {
      if (this.#dropped++ === 0) this.#log.warn('request log: the primary is not keeping up; records are dropped until it does');
      return;
    }
    this.#rows.push(r);
    // A full batch goes on the next turn of the event loop, never inside the request's own.
    if (this.#rows.length >= BATCH_ROWS && this.#soon === null) this.#soon = setImmediate(this.#flushSoon);
  };

  readonly #flushSoon = (): void => {
    this.#soon = null;
    this.flush();
  };

  start(): void {
    this.#timer ??= setInterval(() => this.flush(), BATCH_INTERVAL_MS).unref();
  }

  flush(): void {
    if (this.#rows.length === 0) return;
    const rows = this.#rows;
    this.#rows = [];
    this.#unsent++;
    const sent = send({ t: 'records', rows }).then(() => {
      this.#unsent--;
      this.#inFlight.delete(sent);
    });
    this.#inFlight.add(sent);
    if (this.#dropped > 0 && this.#unsent === 1) {
      this.#log.warn({ dropped: this.#dropped }, 'request log: records were dropped while the primary was not keeping up');
      this.#dropped = 0;
    }
  }

  /** Sends what is left and resolves once every batch is written to the pipe. */
  async close(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    if (this.#soon !== null) clearImmediate(this.#soon);
    this.#timer = this.#soon = null;
    this.flush();
    await Promise.all(this.#inFlight);
  }
}

function receiveConfig(): Promise<Config> {
  return new Promise((resolve) => {
    const onMessage = (m: unknown): void => {
      if (!isToWorker(m) || m.t !== 'config') return;
      process.off('message', onMessage);
      resolve(m.config);
    };
    process.on('message', onMessage);
    void send({ t: 'hello' });
  });
}

function startError(err: unknown): StartError {
  if (err instanceof ConfigError) return { message: err.message, path: err.path };
  return { message: err instanceof Error ? err.message : String(err), path: null };
}

/** `mtls-proxy start` in a cluster worker: wait for the primary's config, serve until told to stop. */
export async function runWorker(): Promise<void> {
  const id = cluster.worker?.id ?? 0;
  const config = await receiveConfig();
  const logger = createLogger(config.log).child({ worker: id });
  // Metrics only when the primary serves them ([admin]): without it nothing reads them, and
  // keeping them costs every request (and prom-client's RSS in every worker).
  const server = new ProxyServer(config, { logger, admin: false, metrics: config.admin !== null, requestLog: false });
  const records = new RecordSender(logger);
  if (config.requestLog !== null) server.onRequest(records.push);

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      try {
        await server.shutdown();
      } catch (err) {
        logger.error({ err }, 'shutdown failed');
      }
      await records.close();
      await send({ t: 'stopped' });
      process.exit(0);
    })();
    return stopping;
  };

  const answers: { [Q in Question]: () => Answers[Q] | Promise<Answers[Q]> } = {
    status: () => ({ pid: process.pid, phase: server.phase, startedAt: server.startedAt, listeners: server.listeners() }),
    upstreams: () => server.upstreams(),
    certificates: () => server.certificates(),
    readiness: () => server.readiness(),
    reload: () => server.reload(),
    metrics: async () => (server.metrics === null ? [] : await server.metrics.registry.getMetricsAsJSON()),
  };
  process.on('message', (m: unknown) => {
    if (!isToWorker(m)) return;
    if (m.t === 'shutdown') {
      void stop();
    } else if (m.t === 'ask') {
      Promise.resolve()
        .then(() => answers[m.q]())
        .then(
          (value) => send({ t: 'answer', id: m.id, ok: true, value }),
          (err: unknown) => send({ t: 'answer', id: m.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
        );
    }
  });

  // The primary relays SIGHUP and SIGTERM to every worker; a signal sent to the whole process
  // group (Ctrl-C in a terminal, systemd's KillMode=control-group) reaches the workers directly
  // too, and means the same. SIGHUP's default action would kill the process.
  process.once('SIGTERM', () => {
    logger.info({ signal: 'SIGTERM' }, 'signal received');
    void stop();
  });
  process.once('SIGINT', () => {
    logger.info({ signal: 'SIGINT' }, 'signal received');
    void stop();
  });
  process.on('SIGHUP', () => {
    logger.info({ signal: 'SIGHUP' }, 'signal received');
    void server.reload();
  });

  try {
    await server.start();
  } catch (err) {
    await send({ t: 'start-failed', error: startError(err) });
    process.exit(1);
  }
  records.start();
  await send({ t: 'started' });
}
