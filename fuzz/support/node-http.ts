// Node's own HTTP/1 parser (native llhttp, strict: no insecureHTTPParser) as the other side of the
// differential properties: a real http.Server on a Unix socket for requests (no TCP ports used up,
// no TIME_WAIT), and http.request over an in-memory stream for responses.
import http from 'node:http';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';

export interface NodeRequest {
  method: string;
  url: string;
  headers: Array<[string, string]>;
  body: Buffer;
  keepAlive: boolean;
  /** Handed to an 'upgrade' or 'connect' listener: Node parsed no body and nothing after it. */
  switched: 'upgrade' | 'connect' | null;
  /** The body ended (a request cut short by the input's end is not a message). */
  complete: boolean;
}

export interface NodeOutcome {
  messages: NodeRequest[];
  /** clientError code (HPE_*), or `local-<status>` when Node answered an error itself (missing Host). */
  error: string | null;
  /** A request whose head Node completed but whose body the input cut short. */
  cut: boolean;
}

interface ConnState {
  messages: NodeRequest[];
  error: string | null;
  cut: boolean;
  /** A message that closes the connection was seen: later ones don't count. */
  closed: boolean;
  done: () => void;
}

function pairs(raw: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}

export class NodeRequestParser {
  readonly #server: http.Server;
  readonly #dir: string;
  readonly #path: string;
  /** Connection being served, by its server-side socket. */
  readonly #states = new Map<Socket, ConnState>();
  #pending: ConnState | null = null;

  private constructor(server: http.Server, dir: string, path: string) {
    this.#server = server;
    this.#dir = dir;
    this.#path = path;
  }

  static async start(maxHeaderSize: number): Promise<NodeRequestParser> {
    const dir = mkdtempSync(join(tmpdir(), 'mtls-fuzz-node-'));
    const path = join(dir, 'http.sock');
    // requireHostHeader's own 400 goes out while Node keeps parsing (and emitting) pipelined
    // requests behind it on the connection it is closing; the same rule is applied in record()
    // so that nothing after the refused request counts
    const server = http.createServer({ maxHeaderSize, insecureHTTPParser: false, requireHostHeader: false, keepAliveTimeout: 1000 });
    const p = new NodeRequestParser(server, dir, path);
    server.on('connection', (socket: Socket) => {
      const state = p.#pending!;
      p.#pending = null;
      p.#states.set(socket, state);
      socket.on('close', () => {
        p.#states.delete(socket);
        state.done();
      });
    });
    const record = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      const state = p.#states.get(req.socket as Socket);
      if (state && (state.error !== null || state.closed)) {
        req.resume();
        return;
      }
      if (state && req.httpVersion === '1.1' && req.headers.host === undefined) {
        state.error = 'missing-host';
        res.writeHead(400, { connection: 'close' }).end();
        return;
      }
      const parts: Buffer[] = [];
      // the slot is taken now, in parse order ('connect' and 'upgrade' fire before a previous
      // request's body 'end'); the body is filled in at 'end'
      const entry: NodeRequest = { method: req.method ?? '', url: req.url ?? '', headers: pairs(req.rawHeaders), body: Buffer.alloc(0), keepAlive: res.shouldKeepAlive, switched: null, complete: false };
      state?.messages.push(entry);
      if (state && !res.shouldKeepAlive) state.closed = true;
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        entry.body = Buffer.concat(parts);
        entry.complete = true;
        res.end('ok');
      });
      req.on('aborted', () => {
        if (state) state.cut = true;
      });
      req.on('error', () => {
        if (state) state.cut = true;
      });
    };
    server.on('request', record);
    server.on('checkExpectation', record);
    server.on('checkContinue', (req, res) => {
      res.writeContinue();
      record(req, res);
    });
    for (const ev of ['upgrade', 'connect'] as const) {
      server.on(ev, (req: http.IncomingMessage, socket: Duplex) => {
        const state = p.#states.get(req.socket as Socket);
        if (state && (state.error !== null || state.closed)) return socket.destroy();
        state?.messages.push({ method: req.method ?? '', url: req.url ?? '', headers: pairs(req.rawHeaders), body: Buffer.alloc(0), keepAlive: false, switched: ev, complete: true });
        if (state) state.closed = true;
        socket.destroy();
      });
    }
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const state = p.#states.get(socket as Socket);
      if (state && state.error === null) state.error = err.code ?? 'clientError';
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(path, resolve));
    return p;
  }

  /** Send `bytes` on a fresh connection, half-close, and report what Node made of them. */
  parse(bytes: Buffer): Promise<NodeOutcome> {
    return new Promise((resolve) => {
      let received = '';
      let serverDone = false;
      let clientDone = false;
      const state: ConnState = { messages: [], error: null, cut: false, closed: false, done: () => ((serverDone = true), finish()) };
      const finish = (): void => {
        if (!serverDone || !clientDone) return;
        clearTimeout(timer);
        // any other error Node answers itself (no event)
        const local = /^HTTP\/1\.1 (4\d\d|5\d\d) /m.exec(received);
        if (state.error === null && local) state.error = `local-${local[1]}`;
        const firstCut = state.messages.findIndex((m) => !m.complete);
        const messages = firstCut === -1 ? state.messages : state.messages.slice(0, firstCut);
        resolve({ messages, error: state.error, cut: state.cut || firstCut !== -1 });
      };
      const timer = setTimeout(() => {
        state.error ??= 'timeout';
        serverDone = true;
        clientDone = true;
        c.destroy();
        finish();
      }, 3000);
      this.#pending = state;
      const c = connect(this.#path, () => c.end(bytes));
      c.setEncoding('latin1');
      c.on('data', (d: string) => (received += d));
      c.on('error', () => {});
      c.on('close', () => {
        clientDone = true;
        finish();
      });
    });
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

export type NodeResponse =
  | { kind: 'response'; status: number; headers: Array<[string, string]>; body: Buffer }
  | { kind: 'error'; code: string }
  | { kind: 'incomplete' };

/** What Node's client parser makes of `raw` as the answer to a GET; `eof`: the peer closed after it. */
export function nodeParseResponse(raw: Buffer, eof: boolean): Promise<NodeResponse> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: NodeResponse): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const socket = new Duplex({
      read() {},
      write(_chunk, _enc, cb) {
        cb();
      },
    });
    const timer = setTimeout(() => done({ kind: 'incomplete' }), eof ? 1000 : 100);
    const req = http.request({ method: 'GET', path: '/r', headers: { host: 'localhost' }, createConnection: () => socket as unknown as Socket, insecureHTTPParser: false, maxHeaderSize: 1 << 20 });
    let gotResponse = false;
    let error: string | null = null;
    req.on('response', (res) => {
      gotResponse = true;
      // bytes after a complete response make Node report an error before the response's own
      // 'end'; the first response is still what the upstream sent (the rest answers nothing)
      res.on('close', () => done(error !== null ? { kind: 'error', code: error } : { kind: 'incomplete' }));
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => {
        if (res.complete) done({ kind: 'response', status: res.statusCode ?? 0, headers: pairs(res.rawHeaders), body: Buffer.concat(parts) });
        else done({ kind: 'incomplete' });
      });
      res.on('aborted', () => done({ kind: 'incomplete' }));
      res.on('error', () => done({ kind: 'incomplete' }));
    });
    req.on('upgrade', () => done({ kind: 'error', code: 'upgrade' }));
    req.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
      if (!gotResponse) done({ kind: 'error', code: error });
    });
    req.end();
    setImmediate(() => {
      socket.push(raw);
      if (eof) socket.push(null);
    });
  });
}
