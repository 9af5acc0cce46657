// A recording mTLS origin for the selftest, the corpus test and the end-to-end fuzzer. It keeps
// every byte the proxy sends, parses them with the strict canonical parser (canonical.ts), and
// answers each complete request itself, or with a scripted (possibly hostile) response.
// Anything non-canonical is recorded as a violation and the connection is cut.
import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { headerValue, parseCanonicalRequest, type CanonicalMessage } from './canonical.ts';

export interface OriginMessage extends CanonicalMessage {
  /** Index of the upstream connection it came on (order of arrival). */
  connection: number;
  /** The x-request-id the proxy added, or null. */
  requestId: string | null;
}

export interface OriginViolation {
  connection: number;
  reason: string;
  /** The unparsed bytes from where the bad message started (latin1, cut to 2 KiB). */
  bytes: string;
}

/** What the origin saw between begin() and end(). */
export interface OriginWindow {
  messages: OriginMessage[];
  violations: OriginViolation[];
  /** Connections that hold bytes of an incomplete message. */
  partial: number[];
  connectionsOpened: number;
  bytes: number;
}

interface Conn {
  index: number;
  socket: TLSSocket;
  buf: Buffer;
  parsed: number;
  bad: boolean;
}

export interface OriginTls {
  cert: string;
  key: string;
  /** CA the proxy's client certificate must chain to. */
  ca: string;
}

export class RecordingOrigin {
  readonly #server: Server;
  readonly #conns = new Set<Conn>();
  #next = 0;
  #messages: OriginMessage[] = [];
  #violations: OriginViolation[] = [];
  #windowStartConn = 0;
  #bytes = 0;
  #script: { raw: Buffer; close: boolean } | null = null;
  /** Connections that carried bytes in the current window. */
  #touched = new Set<Conn>();

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(tls: OriginTls): Promise<RecordingOrigin> {
    const server = createServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: true, rejectUnauthorized: true });
    const origin = new RecordingOrigin(server);
    server.on('secureConnection', (s: TLSSocket) => origin.#accept(s));
    server.on('tlsClientError', () => {});
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return origin;
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** Start a case: forget what was seen; `script` answers the next request instead of the echo. */
  begin(script: { raw: Buffer; close: boolean } | null = null): void {
    this.#messages = [];
    this.#violations = [];
    this.#touched.clear();
    this.#bytes = 0;
    this.#windowStartConn = this.#next;
    this.#script = script;
  }

  /** What arrived since begin(). */
  end(): OriginWindow {
    const partial: number[] = [];
    for (const c of this.#touched) if (!c.bad && c.buf.length > c.parsed) partial.push(c.index);
    return {
      messages: this.#messages.slice(),
      violations: this.#violations.slice(),
      partial,
      connectionsOpened: this.#next - this.#windowStartConn,
      bytes: this.#bytes,
    };
  }

  /** Messages received so far in this window (the selftest client reads HEAD-ness from it). */
  get messages(): readonly OriginMessage[] {
    return this.#messages;
  }

  #accept(socket: TLSSocket): void {
    const conn: Conn = { index: this.#next++, socket, buf: Buffer.alloc(0), parsed: 0, bad: false };
    this.#conns.add(conn);
    socket.on('data', (d: Buffer) => this.#onData(conn, d));
    socket.on('error', () => {});
    socket.on('close', () => this.#conns.delete(conn));
  }

  #onData(conn: Conn, d: Buffer): void {
    if (conn.bad) return;
    this.#touched.add(conn);
    this.#bytes += d.length;
    conn.buf = conn.buf.length === 0 ? d : Buffer.concat([conn.buf, d]);
    for (;;) {
      const r = parseCanonicalRequest(conn.buf, conn.parsed);
      if (r.kind === 'incomplete') return;
      if (r.kind === 'invalid') {
        conn.bad = true;
        this.#violations.push({ connection: conn.index, reason: r.reason, bytes: conn.buf.toString('latin1', conn.parsed, conn.parsed + 2048) });
        conn.socket.destroy();
        return;
      }
      const m = r.message;
      conn.parsed = m.end;
      this.#messages.push({ ...m, connection: conn.index, requestId: headerValue(m, 'x-request-id') });
      this.#respond(conn, m);
      // keep memory flat on long-lived connections
      if (conn.parsed === conn.buf.length) {
        conn.buf = Buffer.alloc(0);
        conn.parsed = 0;
      }
    }
  }

  #respond(conn: Conn, m: CanonicalMessage): void {
    const script = this.#script;
    if (script !== null) {
      this.#script = null;
      conn.socket.write(script.raw);
      if (script.close) conn.socket.end();
      return;
    }
    const body = `origin saw ${m.method} ${m.target} (${m.body.length} body bytes)\n`;
    const head = `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`;
    conn.socket.write(m.method === 'HEAD' ? head : head + body, 'latin1');
  }

  /** Cut every connection to the proxy (an upstream going away). */
  dropConnections(): void {
    for (const c of this.#conns) c.socket.destroy();
  }

  async close(): Promise<void> {
    for (const c of this.#conns) c.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
