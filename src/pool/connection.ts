// One pooled upstream TLS connection and its response parser. While idle in the pool it
// has no owner: any byte or FIN it receives then marks it dead, so validate-on-borrow drops
// it (a keep-alive connection the upstream is closing must never carry a request).
import type { TLSSocket } from 'node:tls';
import { HttpParser, TYPE_RESPONSE, type ParserHandler } from '../http/llhttp.ts';
import type { ProxyError } from '../errors.ts';
import type { ReadInto } from './types.ts';
import { SocketWriter } from '../net/socket-writer.ts';

/**
 * Bytes per upstream read. Node's TLS layer hands out at most 16 KiB of cleartext per read
 * (one TLS record), so a larger buffer would never fill.
 */
const READ_BUFFER_BYTES = 16 * 1024;

/** What an exchange must handle while it owns a connection. */
export interface ConnectionOwner extends ParserHandler {
  onUpstreamChunk(chunk: Buffer): void;
  onUpstreamEnd(): void;
  onUpstreamClose(error: Error | null): void;
  onUpstreamDrain(): void;
}

const IDLE_HANDLER: ParserHandler = {
  onMessageBegin: () => -1,
  onUrl: () => -1,
  onStatus: () => -1,
  onHeaderField: () => -1,
  onHeaderValue: () => -1,
  onHeadersComplete: () => -1,
  onBody: () => -1,
  onMessageComplete: () => -1,
};

/**
 * The `onread` target of one upstream socket: every read lands in the same buffer, so a
 * response costs no Buffer (and no malloc'd backing store) per read, and none of the Readable
 * machinery behind 'data'. Created before the socket (the option is given at connect time);
 * bytes that arrive before a connection is attached, or while none owns it, mark it dead.
 */
export class UpstreamReads implements ReadInto {
  readonly buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
  #conn: UpstreamConnection | null = null;
  #early = false;

  attach(conn: UpstreamConnection): boolean {
    this.#conn = conn;
    return !this.#early;
  }

  readonly callback = (nread: number, buffer: Buffer): boolean => {
    const conn = this.#conn;
    if (conn === null) this.#early = true;
    else conn.onRead(buffer.subarray(0, nread));
    return true;
  };
}

export class UpstreamConnection {
  readonly socket: TLSSocket | null;
  readonly parser: HttpParser | null;
  /** Everything written to the socket goes through this (src/net/socket-writer.ts). */
  readonly writer: SocketWriter | null;
  /** Set when connecting failed: the pool hands the failure to the borrower as data. */
  readonly failure: ProxyError | null;
  /** Exchanges completed on this connection; > 0 means a reused keep-alive connection. */
  uses = 0;
  /** False for a one-off connection made for a retry: destroyed after use. */
  pooled = true;
  /** performance.now() when last released to its pool's ready list. */
  idleSince = 0;
  #owner: ConnectionOwner | null = null;
  #dead = false;
  #lastError: Error | null = null;

  /** `reads`: what the socket was opened with as `onread` (see UpstreamReads); null without a socket. */
  constructor(socket: TLSSocket | null, failure: ProxyError | null, reads: UpstreamReads | null) {
    this.socket = socket;
    this.failure = failure;
    this.parser = socket ? new HttpParser(TYPE_RESPONSE, IDLE_HANDLER) : null;
    this.writer = socket ? new SocketWriter(socket, this.#onDrain) : null;
    if (socket) {
      if (reads === null) throw new Error('an upstream socket must be opened with its UpstreamReads');
      if (!reads.attach(this)) this.#dead = true; // spoke before anything was asked
      socket.on('end', this.#onEnd);
      socket.on('error', this.#onError);
      socket.on('close', this.#onClose);
    }
  }

  /** Usable for a new exchange: open, nothing received while idle, no FIN. */
  get usable(): boolean {
    const s = this.socket;
    return s !== null && !this.#dead && !s.destroyed && s.writable && s.readyState === 'open';
  }

  bind(owner: ConnectionOwner): void {
    this.#owner = owner;
    const parser = this.parser!;
    parser.handler = owner;
    // the previous exchange paused the parser at its message's end (llhttp ignores this otherwise)
    parser.resume();
  }

  unbind(): void {
    this.#owner = null;
    if (this.parser) this.parser.handler = IDLE_HANDLER;
    // An exchange pauses the socket while its client is behind (Exchange.#clientFull), and may
    // end paused: Node's TLS layer hands out every record it decrypted from one socket read,
    // pause or not, so a response's last bytes can come after the pause. Idle, the connection
    // must read (bytes or a FIN then mark it dead), and the next exchange's response must come
    // in: paused, it was a 504 after timeouts.response_header (3 of 50 bulk downloads).
    const s = this.socket;
    if (s !== null && !this.#dead && !s.destroyed && s.isPaused()) s.resume();
  }

  destroy(): void {
    this.#dead = true;
    this.unbind();
    this.socket?.destroy();
  }

  /**
   * Bytes from the upstream. With UpstreamReads the chunk is a view of the read buffer, valid
   * only until this returns: the owner must write it on or copy it before then.
   */
  onRead(chunk: Buffer): void {
    const owner = this.#owner;
    if (owner) owner.onUpstreamChunk(chunk);
    else {
      // RFC 9112 §9.3: bytes on an idle connection are not a response to anything.
      this.#dead = true;
      this.socket?.destroy();
    }
  }

  #onEnd = (): void => {
    const owner = this.#owner;
    if (owner) owner.onUpstreamEnd();
    else this.#dead = true;
  };

  #onError = (err: Error): void => {
    this.#lastError = err;
    this.#dead = true;
  };

  #onClose = (): void => {
    this.#dead = true;
    // freed here, not in destroy(): destroy() may run inside a parser callback
    this.parser?.destroy();
    this.writer?.drop();
    const owner = this.#owner;
    if (owner) {
      this.#owner = null;
      owner.onUpstreamClose(this.#lastError);
    }
  };

  #onDrain = (): void => {
    this.#owner?.onUpstreamDrain();
  };
}
