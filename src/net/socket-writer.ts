// Everything the HTTP layer writes to one TLS socket goes through its SocketWriter, which
// coalesces what arrives while a write is in flight into one buffer, written as one Buffer when
// that write completes.
//
// Why: Node's TLS layer encrypts a write before write() returns (TLSWrap::DoWrite runs SSL_write
// on it), but only when the socket has no write in flight; and the one in flight completes at
// the earliest in the event loop's next check phase. So of the records one upstream read yields
// (up to 64 KiB, 16 KiB each), the first goes straight into TLS and the rest wait. Written
// through socket.write() they waited as Node's buffered-write list: an object and a callback
// per chunk, a copy of each (the bytes are views of a reused read buffer), and at completion
// a writev that TLSWrap concatenates into one more copy before SSL_write. Here they wait as
// bytes in one buffer (one copy) and leave as one write: per 256 MiB download, ~12 000 fewer
// buffered writes and 256 MiB less memcpy (bench/tools/bulk-builds.sh).
//
// The buffer is reused the moment write() returns because TLS has taken the bytes in: that
// holds only when the socket is encrypted, idle (nothing in flight or queued) and not corked.
// Otherwise the buffer goes to Node's queue as it is ("handed") and comes back when that write
// calls back. Bytes written around the writer (socket.write/end) would overtake what it holds:
// settle() first.
//
// Flow control: write() returns false once a full buffer's worth (WRITE_LIMIT) is held back;
// the source pauses until onDrain, called when that has gone out. Held back at most: one
// buffer, plus the write in flight (encrypted already, waiting for the peer).
import type { TLSSocket } from 'node:tls';

/**
 * Bytes held back before the source must pause (Envoy's per_connection_buffer_limit_bytes is
 * 1 MiB by default too). Pausing at every `write() === false` (the 64 KiB high-water mark)
 * would stop reading the source at nearly every chunk and serialise reading and writing.
 */
export const WRITE_LIMIT = 1024 * 1024;
/** First buffer a writer takes: enough for the records of one read, behind a write in flight. */
const SMALL_BYTES = 64 * 1024;
/** The buffer of a writer whose peer is behind: the limit, plus what a paused source still delivers (its last read). */
const BIG_BYTES = WRITE_LIMIT + 128 * 1024;
const KEEP_SMALL = 16;
const KEEP_BIG = 2;

const freeSmall: Buffer[] = [];
const freeBig: Buffer[] = [];
const stats = { copies: 0, copiedBytes: 0, flushes: 0, handed: 0, made: 0, inUse: 0 };

function take(bytes: number): Buffer {
  stats.inUse++;
  const b = (bytes === SMALL_BYTES ? freeSmall : freeBig).pop();
  if (b !== undefined) return b;
  stats.made++;
  return Buffer.allocUnsafeSlow(bytes);
}

function give(b: Buffer): void {
  stats.inUse--;
  if (b.length === SMALL_BYTES) {
    if (freeSmall.length < KEEP_SMALL) freeSmall.push(b);
  } else if (freeBig.length < KEEP_BIG) freeBig.push(b);
}

interface Connecting {
  connecting?: boolean;
}

export class SocketWriter {
  readonly socket: TLSSocket;
  readonly #onDrain: () => void;
  /** TLS takes a write in before write() returns (see the top); a plain socket keeps a reference. */
  readonly #encrypted: boolean;
  #buf: Buffer | null = null;
  #used = 0;
  /** Writes of ours the socket has not called back yet. */
  #ours = 0;
  /** Buffers in the socket's write queue, in write order (each comes back at its callback). */
  readonly #handed: Buffer[] = [];
  #corked = false;
  /** Inside cork(): writes go straight to the corked socket, taken in at uncork(). */
  #direct = false;
  #full = false;

  constructor(socket: TLSSocket, onDrain: () => void) {
    this.socket = socket;
    this.#onDrain = onDrain;
    this.#encrypted = socket.encrypted === true;
  }

  /** Bytes held back here, not yet given to the socket. */
  get held(): number {
    return this.#used;
  }

  /**
   * Write `view`: straight into TLS when the socket is idle, else a copy into the buffer. The
   * view may be overwritten once this returns. False: the source should pause until onDrain.
   */
  write(view: Buffer): boolean {
    if (this.#direct || (this.#used === 0 && !this.#corked && this.#idle())) {
      this.#ours++;
      this.socket.write(view, this.#done);
      return true;
    }
    const n = view.length;
    if (n > BIG_BYTES) return this.#writeLarge(Buffer.copyBytesFrom(view));
    const at = this.#room(n);
    view.copy(this.#buf!, at, 0, n);
    return this.#added(n);
  }

  /**
   * write() for the last bytes of a message, when nothing else is known to follow soon (a small
   * response whole, a request head without a body). Straight into TLS without the completion
   * callback that lets later bytes gather behind it: ~2% of a small request's CPU
   * (bench/tools/ab-builds.sh). Bytes that do come while it is in flight take the queue, as
   * copies (the writer has no callback to send them from).
   */
  writeLast(view: Buffer): void {
    if (this.#direct || (this.#used === 0 && !this.#corked && this.#idle())) this.socket.write(view);
    else this.write(view);
  }

  /** write() for text (framing, heads), as latin1. */
  writeLatin1(s: string): boolean {
    if (this.#direct || (this.#used === 0 && !this.#corked && this.#idle())) {
      this.#ours++;
      this.socket.write(s, 'latin1', this.#done);
      return true;
    }
    if (s.length > BIG_BYTES) return this.#writeLarge(Buffer.from(s, 'latin1'));
    const at = this.#room(s.length);
    this.#buf!.write(s, at, s.length, 'latin1');
    return this.#added(s.length);
  }

  /** Until uncork(), writes gather into one write (as socket.cork(), with the same copies). */
  cork(): void {
    this.#corked = true;
    if (this.#used === 0 && this.#idle()) {
      this.#direct = true;
      this.socket.cork();
    }
  }

  uncork(): void {
    this.#corked = false;
    if (this.#direct) {
      this.#direct = false;
      this.socket.uncork();
    } else if (this.#used > 0 && this.#ours === 0) this.#flush();
  }

  /** Hand what is held back to the socket now, so a write around the writer goes after it. */
  settle(): void {
    if (this.#used > 0) this.#flush();
  }

  /** The socket is being destroyed: what is held back is dropped. */
  drop(): void {
    this.#used = 0;
    this.#full = false;
    const b = this.#buf;
    this.#buf = null;
    if (b !== null) give(b);
  }

  #idle(): boolean {
    const s = this.socket;
    return this.#ours === 0 && this.#encrypted && s.writableLength === 0 && s.writableCorked === 0 && (s as Connecting).connecting !== true;
  }

  /** Where `n` (at most BIG_BYTES) more bytes go in the buffer, taking or growing one as needed. */
  #room(n: number): number {
    let b = this.#buf;
    if (b !== null && this.#used + n > b.length) {
      if (b.length === SMALL_BYTES && this.#used + n <= BIG_BYTES) {
        // behind for longer than one read: the big buffer, once per stretch of being behind
        const big = take(BIG_BYTES);
        b.copy(big, 0, 0, this.#used);
        give(b);
        b = this.#buf = big;
      } else {
        // a source that went on past write() === false: what is held goes to the queue as it
        // is (an idle socket takes it in at once, and then the buffer is still ours)
        this.#flush();
        b = this.#buf;
      }
    }
    if (b === null || this.#used + n > b.length) {
      // none yet, or an emptied small one too small for n
      if (b !== null) give(b);
      this.#buf = take(n <= SMALL_BYTES ? SMALL_BYTES : BIG_BYTES);
    }
    return this.#used;
  }

  /** More than a buffer holds (a huge head): what is held, then a copy of its own. */
  #writeLarge(copy: Buffer): boolean {
    this.settle();
    this.#ours++;
    this.socket.write(copy, this.#done);
    return true;
  }

  #added(n: number): boolean {
    this.#used += n;
    stats.copies++;
    stats.copiedBytes += n;
    // nothing of ours in flight whose callback would send it: send it now
    if (this.#ours === 0 && !this.#corked) this.#flush();
    if (this.#used >= WRITE_LIMIT) this.#full = true;
    return !this.#full;
  }

  #flush(): void {
    const b = this.#buf!;
    const n = this.#used;
    const idle = this.#idle();
    this.#used = 0;
    this.#ours++;
    stats.flushes++;
    if (idle) {
      // taken in by TLS before write() returns: the buffer is free again at once
      this.socket.write(b.subarray(0, n), this.#done);
      return;
    }
    stats.handed++;
    this.#buf = null;
    this.#handed.push(b);
    this.socket.write(b.subarray(0, n), this.#doneHanded);
  }

  readonly #done = (err?: Error | null): void => {
    this.#ours--;
    if (err) {
      this.drop();
      return;
    }
    if (this.#ours > 0) return;
    if (this.#used > 0) {
      if (!this.#corked) this.#flush();
    } else if (this.#buf !== null) {
      // idle: the buffer goes back for other sockets
      give(this.#buf);
      this.#buf = null;
    }
    if (this.#full && this.#used < WRITE_LIMIT) {
      this.#full = false;
      this.#onDrain();
    }
  };

  readonly #doneHanded = (err?: Error | null): void => {
    const b = this.#handed.shift();
    if (b !== undefined) give(b);
    this.#done(err);
  };
}

/**
 * For tests: writes copied into writer buffers and their bytes, flushes (handed: to a busy
 * socket's queue), buffers allocated, buffers out now (held by writers or sockets), buffers free.
 */
export function writerStats(): { copies: number; copiedBytes: number; flushes: number; handed: number; made: number; inUse: number; free: number } {
  return { ...stats, free: freeSmall.length + freeBig.length };
}
