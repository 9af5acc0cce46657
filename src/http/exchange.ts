// One proxied request, through its phases (STYLE.md, after Pingora):
// choose upstream + connect (pool) -> upstream request head -> stream request body ->
// response head -> stream response body -> release or destroy the upstream connection ->
// log (exactly once). The exchange is the response parser's handler while it owns a
// connection. Bodies move as the views the parsers hand out; nothing is collected.
import type { TLSSocket } from 'node:tls';
import { ProxyError } from '../errors.ts';
import { isSharedReadView } from '../net/client-reads.ts';
import type { SocketWriter } from '../net/socket-writer.ts';
import type { Endpoint } from '../pool/balancer.ts';
import type { Lease, UpstreamCluster } from '../pool/upstream-cluster.ts';
import type { ListenerContext } from './context.ts';
import { ERR, errorName } from './llhttp.ts';
import { headWriter } from './headers.ts';
import { CLIENT_CLOSED_STATUS } from './local-response.ts';
import type { ResponseHead } from './response-head.ts';

/** What the exchange needs from the client connection that owns it. */
export interface DownstreamPort {
  readonly socket: TLSSocket;
  /** The socket's writer: every response byte goes through it. */
  readonly writer: SocketWriter;
  readonly ctx: ListenerContext;
  /** The connection's response head collector, lent to one exchange at a time. */
  readonly responseHead: ResponseHead;
  /** Upstream can't take more request body: stop reading the client. */
  pauseForUpstream(): void;
  resumeFromUpstream(): void;
  /** The exchange is over. `reusable`: the client connection may carry another request. */
  exchangeDone(exchange: Exchange, reusable: boolean): void;
  /** Answer locally (nothing of a response went out yet) and close. */
  failBeforeResponse(exchange: Exchange, err: ProxyError): void;
  /** (Re)start the connection's exchange timer: onExchangeTimer() of the exchange in progress in `ms`. */
  armExchangeTimer(ms: number): void;
  /**
   * The upstream switched protocols (101 to our WebSocket handshake) and the 101 went out: from
   * now on the client's bytes go to tunnelIn() as they are, its FIN to tunnelClientEnded().
   */
  tunnelStarted(exchange: Exchange): void;
}

export interface ExchangeInit {
  id: string;
  method: string;
  /** Target as sent upstream (route applied). */
  target: string;
  host: string;
  /** Path without the query string, for the request log. */
  path: string;
  /** Request head as it goes upstream, ending in the blank line. */
  upstreamHead: Buffer;
  chunked: boolean;
  hasBody: boolean;
  clientKeepAlive: boolean;
  clientMinor: number;
  /** The protocol the request asks to switch to (request-filters.ts websocketUpgrade), or null. */
  upgrade: string | null;
  cluster: UpstreamCluster;
  /** performance.now() and Date.now() at the request's first byte. */
  startedAt: number;
  wallStart: number;
  headBytesIn: number;
}

// RFC 9110 §9.2.2: methods whose repetition is harmless, so the keep-alive race may retry them.
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
const CRLF = '\r\n';
const LAST_CHUNK = '0\r\n\r\n';
const RESPONSE_HEAD_MIN = 64 * 1024;
/** Largest head + body written as one Buffer (#writeHeldHead): one TLS record's plaintext. */
const ONE_WRITE_MAX = 16 * 1024;
/** Replace views of the client's shared read buffer with copies, in place. */
function detach(views: Buffer[]): void {
  for (let i = 0; i < views.length; i++) {
    const v = views[i]!;
    if (isSharedReadView(v)) views[i] = Buffer.copyBytesFrom(v);
  }
}

export class Exchange {
  readonly init: ExchangeInit;
  readonly #down: DownstreamPort;
  readonly #client: TLSSocket;
  readonly #out: SocketWriter;

  // request side
  #lease: Lease | null = null;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Views of a body that was complete before we sent anything: replayable. */
  #held: Buffer[] | null = null;
  #requestComplete = false;
  #requestSent = false;
  #requestSentAt = 0;
  #retried = false;
  #upstreamFull = false;
  bytesIn: number;

  // response side
  #status = 0;
  readonly #head: ResponseHead;
  #responseBytesSeen = false;
  #responseStarted = false;
  #interim = false;
  #upstreamKeepAlive = false;
  #extraBytes = false;
  #responseComplete = false;
  #clientFull = false;
  /**
   * After a 101 to our upgrade request: both connections carry the new protocol's bytes, relayed
   * as they come (no parsing, no framing), until the upstream ends its side.
   */
  #tunnel = false;
  /**
   * Bytes of a Content-Length response body still to come. While > 0 the body bypasses the
   * parser: chunks go to the client as they are (no copy into wasm memory, no callback per
   * chunk), counted here; llhttp was told the message has no body (onHeadersComplete -> 1).
   */
  #bodyRemaining = 0;
  bytesOut = 0;

  // lifecycle
  #lastActivity = 0;
  #timer: NodeJS.Timeout | null = null;
  #done = false;
  #error: ProxyError | null = null;
  #connecting = false;

  constructor(down: DownstreamPort, init: ExchangeInit) {
    this.#down = down;
    this.#client = down.socket;
    this.#out = down.writer;
    this.#head = down.responseHead;
    this.#head.reset();
    this.init = init;
    this.bytesIn = init.headBytesIn;
  }

  get status(): number {
    return this.#status;
  }

  get error(): ProxyError | null {
    return this.#error;
  }

  get endpoint(): string | null {
    return this.#lease ? this.#lease.pool.endpoint.key : null;
  }

  get responseStarted(): boolean {
    return this.#responseStarted;
  }

  get connected(): boolean {
    return this.#lease !== null;
  }

  // ---- request side ----------------------------------------------------------------

  /** Body bytes parsed from the client; sent on the next flush() (after the whole chunk parsed). */
  queueBody(view: Buffer): void {
    this.#pending.push(view);
    this.#pendingBytes += view.length;
    this.bytesIn += view.length;
  }

  /**
   * The client read these views came from is over, and its shared buffer (client-reads.ts)
   * takes the next: body views not written yet (no connection yet) or kept for a replay
   * become copies.
   */
  detachViews(): void {
    detach(this.#pending);
    if (this.#held !== null) detach(this.#held);
  }

  /** The request message is complete (llhttp on_message_complete). */
  markRequestComplete(): void {
    this.#requestComplete = true;
  }

  /**
   * Phase: choose upstream + connect. Body parsed meanwhile waits in #pending. An idle pooled
   * connection is attached at once, without a promise; otherwise the pool is waited for.
   */
  start(): void {
    this.#connecting = true;
    this.#lastActivity = performance.now();
    this.#armTimer();
    const cluster = this.init.cluster;
    const ep = cluster.pick();
    const lease = ep !== null ? cluster.tryAcquire(ep) : null;
    if (lease !== null) this.#leased(lease);
    else void this.#acquire(ep);
  }

  async #acquire(ep: Endpoint | null): Promise<void> {
    let lease: Lease;
    try {
      lease = await this.init.cluster.acquire(ep);
    } catch (err) {
      this.#connecting = false;
      this.#fail(err as ProxyError);
      return;
    }
    this.#leased(lease);
  }

  #leased(lease: Lease): void {
    this.#connecting = false;
    if (this.#done) {
      lease.pool.release(lease.conn);
      return;
    }
    // replay-safe: idempotent and no body, or a body we still hold entirely
    if (IDEMPOTENT.has(this.init.method) && (!this.init.hasBody || this.#requestComplete)) {
      this.#held = this.init.hasBody ? this.#pending.slice() : [];
    }
    this.#attach(lease);
  }

  #attach(lease: Lease): void {
    this.#lease = lease;
    lease.conn.bind(this);
    const up = lease.conn.writer!;
    if (this.#pendingBytes === 0 && !this.init.chunked) {
      // the head alone (no body, or none parsed yet): one write, nothing for cork to gather
      // (corking costs a buffered-write list and a writev per request)
      if (this.#requestComplete) up.writeLast(this.init.upstreamHead);
      else up.write(this.init.upstreamHead);
      this.#writePending(up);
    } else {
      up.cork();
      up.write(this.init.upstreamHead);
      this.#writePending(up);
      up.uncork();
    }
    this.#lastActivity = performance.now();
    this.#down.resumeFromUpstream();
  }

  /** After each parsed client chunk: forward what it held. */
  flush(): void {
    if (this.#lease === null) return;
    if (this.#pendingBytes === 0 && !this.#requestComplete) return;
    const up = this.#lease.conn.writer!;
    if (!this.init.chunked && this.#pending.length <= 1) {
      this.#writePending(up); // one view at most: nothing to gather
      return;
    }
    up.cork();
    this.#writePending(up);
    up.uncork();
  }

  /**
   * Body views parsed so far, to the upstream. Views of the client's shared read buffer are
   * taken in by TLS or copied by the writer before it returns (src/net/socket-writer.ts).
   */
  #writePending(up: SocketWriter): void {
    const pending = this.#pending;
    const n = this.#pendingBytes;
    if (n > 0) {
      let ok = true;
      if (this.init.chunked) up.writeLatin1(n.toString(16) + CRLF);
      for (let i = 0; i < pending.length; i++) ok = up.write(pending[i]!) && ok;
      if (this.init.chunked) ok = up.writeLatin1(CRLF) && ok;
      pending.length = 0;
      this.#pendingBytes = 0;
      this.#lastActivity = performance.now();
      if (!ok) {
        this.#upstreamFull = true;
        this.#down.pauseForUpstream();
      }
    }
    if (this.#requestComplete && !this.#requestSent) {
      // RFC 9112 §7.1: we frame chunked bodies ourselves; extensions and trailers are dropped.
      if (this.init.chunked) up.writeLatin1(LAST_CHUNK);
      this.#requestSent = true;
      this.#requestSentAt = performance.now();
    }
  }

  onUpstreamDrain(): void {
    if (this.#upstreamFull) {
      this.#upstreamFull = false;
      this.#down.resumeFromUpstream();
    }
  }

  // ---- response side (ConnectionOwner + ParserHandler) ---------------------------------

  onUpstreamChunk(chunk: Buffer): void {
    if (this.#done) return;
    this.#lastActivity = performance.now();
    // The chunk is a view of the connection's read buffer (UpstreamReads), overwritten by the
    // next read: the client's writer takes it into TLS or copies it before returning.
    if (this.#bodyRemaining > 0) {
      this.#forwardBody(chunk, 0);
      return;
    }
    if (this.#tunnel) {
      this.#tunnelOut(chunk, 0);
      return;
    }
    this.#responseBytesSeen = true;
    const conn = this.#lease!.conn;
    const out = this.#out;
    out.cork();
    const ret = conn.parser!.execute(chunk);
    if (ret === ERR.PAUSED && this.#bodyRemaining > 0) {
      // the head of a Content-Length response (held in headWriter): the rest of the chunk
      // starts its body
      this.#writeHeldHead(chunk, conn.parser!.stoppedAt);
      out.uncork();
      return;
    }
    if (ret === ERR.PAUSED_UPGRADE && this.#tunnel) {
      // the 101 went out (onHeadersComplete); what follows its head is the new protocol's
      const at = conn.parser!.stoppedAt;
      if (at < chunk.length) this.#tunnelOut(chunk, at);
      out.uncork();
      this.#down.tunnelStarted(this);
      return;
    }
    out.uncork();
    if (ret === ERR.OK) {
      if (this.#clientFull) conn.socket!.pause();
      return;
    }
    if (ret === ERR.PAUSED) {
      // paused by our onMessageComplete; anything after it was not asked for
      if (conn.parser!.stoppedAt < chunk.length) this.#extraBytes = true;
      this.#finish();
      return;
    }
    if (ret === ERR.USER && this.#error) {
      this.#upstreamFailed(this.#error);
      return;
    }
    this.#upstreamFailed(new ProxyError('UPSTREAM_BAD_RESPONSE', `invalid response from upstream: ${conn.parser!.errorReason} (${errorName(ret)})`));
  }

  /**
   * The head of a Content-Length response, built into headWriter by onHeadersComplete, and its
   * body from `at` on. A small response whose body is all in this chunk leaves as one Buffer:
   * one write, where head and body apart would take Node's writev path (a buffered-write
   * list, and TLS copying both into one record).
   */
  #writeHeldHead(chunk: Buffer, at: number): void {
    const w = headWriter;
    const remaining = this.#bodyRemaining;
    if (chunk.length - at >= remaining && w.length + remaining <= ONE_WRITE_MAX) {
      w.addBytes(chunk, at, at + remaining);
      this.bytesOut += w.length;
      this.#bodyRemaining = 0;
      this.#out.writeLast(w.take());
      this.#bodyEnded(at + remaining < chunk.length);
      return;
    }
    this.#writeClient(w.take());
    if (at < chunk.length) this.#forwardBody(chunk, at);
  }

  /** A Content-Length body's bytes from `from` on, past the parser (see #bodyRemaining). */
  #forwardBody(chunk: Buffer, from: number): void {
    const remaining = this.#bodyRemaining;
    const available = chunk.length - from;
    const n = available < remaining ? available : remaining;
    const view = from === 0 && n === chunk.length ? chunk : chunk.subarray(from, from + n);
    const ok = this.#out.write(view);
    this.bytesOut += n;
    this.#bodyRemaining = remaining - n;
    if (!ok) this.#clientFull = true;
    if (this.#bodyRemaining > 0) {
      if (this.#clientFull) this.#lease!.conn.socket!.pause();
      return;
    }
    this.#bodyEnded(from + n < chunk.length);
  }

  /** A Content-Length body is all sent; `moreInChunk`: the upstream chunk held bytes after it. */
  #bodyEnded(moreInChunk: boolean): void {
    // bytes after the body answer nothing we asked: dropped, and the connection is not reused
    if (moreInChunk) this.#extraBytes = true;
    this.#responseComplete = true;
    this.#finish();
  }

  onUpstreamEnd(): void {
    if (this.#done || this.#lease === null) return;
    if (this.#tunnel) {
      // the upstream is done with the new protocol: so is the tunnel (the client gets its FIN
      // after what is still queued for it)
      this.#done = true;
      this.#clearTimer();
      this.#lease.pool.destroy(this.#lease.conn);
      this.#down.exchangeDone(this, false);
      return;
    }
    if (this.#bodyRemaining > 0) {
      this.#upstreamFailed(new ProxyError('UPSTREAM_ABORTED', 'upstream closed in the middle of the response body'));
      return;
    }
    const parser = this.#lease.conn.parser!;
    if (this.#responseStarted && this.#head.mode !== 'none') {
      // a close-delimited body ends here (RFC 9112 §6.3 rule 8); anything else was cut short
      const ret = parser.finish();
      if (this.#done) return;
      if (this.#responseComplete) {
        this.#finish();
        return;
      }
      if (ret !== ERR.OK && ret !== ERR.PAUSED) {
        this.#upstreamFailed(new ProxyError('UPSTREAM_ABORTED', 'upstream closed in the middle of the response body'));
        return;
      }
    }
    if (!this.#done) this.#upstreamFailed(new ProxyError('UPSTREAM_RESET', 'upstream closed the connection before a complete response'));
  }

  onUpstreamClose(error: Error | null): void {
    if (this.#done) return;
    const reason = error ? `: ${error.message}` : '';
    this.#upstreamFailed(new ProxyError(this.#responseStarted ? 'UPSTREAM_ABORTED' : 'UPSTREAM_RESET', `upstream connection closed${reason}`, { cause: error }));
  }

  onMessageBegin(): number {
    this.#status = 0;
    this.#head.reset();
    return 0;
  }

  onUrl(): number {
    return 0;
  }

  onStatus(data: Buffer, start: number, end: number): number {
    this.#head.addReason(data, start, end);
    return this.#growHead(end - start);
  }

  onHeaderField(data: Buffer, start: number, end: number): number {
    if (this.#responseStarted) return this.#growHead(end - start); // trailers: counted, dropped
    this.#head.addName(data, start, end);
    return this.#growHead(end - start + 4);
  }

  onHeaderValue(data: Buffer, start: number, end: number): number {
    if (this.#responseStarted) return this.#growHead(end - start);
    this.#head.addValue(data, start, end);
    return this.#growHead(end - start);
  }

  #growHead(n: number): number {
    const limit = Math.max(RESPONSE_HEAD_MIN, this.#down.ctx.config.limits.maxHeaderSize);
    if (this.#head.grow(n, limit)) return 0;
    this.#error = new ProxyError('UPSTREAM_BAD_RESPONSE', `upstream response head larger than ${limit} bytes`);
    return -1;
  }

  onHeadersComplete(status: number, upgrade: boolean, keepAlive: boolean): number {
    const head = this.#head;
    head.end();
    this.#status = status;
    const final = status >= 200;
    if (!final && (status === 101 || upgrade)) {
      // a switch we did not ask for (Upgrade is forwarded only for a WebSocket handshake), or
      // to another protocol than the one asked for: a protocol violation by the upstream
      const asked = this.init.upgrade;
      const to = status === 101 && upgrade && asked !== null ? head.upgradeValue() : null;
      if (to === null || to.toLowerCase() !== asked!.toLowerCase()) {
        this.#error = new ProxyError('UPSTREAM_BAD_RESPONSE', asked === null ? 'upstream switched protocols without being asked' : `upstream switched to a protocol other than "${asked}"`);
        return -1;
      }
    }
    const problem = head.problem(final);
    if (problem !== null) {
      this.#error = new ProxyError('UPSTREAM_BAD_RESPONSE', problem);
      return -1;
    }
    if (status === 101) {
      this.#tunnel = true;
      this.#responseStarted = true;
      this.#writeClient(head.switching(this.init.id, head.upgradeValue()!));
      return 0;
    }
    if (!final) {
      this.#interim = true;
      // 1xx go to HTTP/1.1 clients only (RFC 9110 §15.2); 100 Continue is what Expect waits for
      if (this.init.clientMinor === 1) this.#writeClient(head.interim(status));
      return 0;
    }
    this.#interim = false;
    this.#upstreamKeepAlive = keepAlive;
    head.build(status, this.init, this.#down.ctx.isDraining());
    this.#responseStarted = true;
    // a Content-Length body: the head stays in headWriter for #writeHeldHead, right after
    // this parse returns (paused by onMessageComplete)
    if (head.bodyLength > 0) this.#bodyRemaining = head.bodyLength;
    else this.#writeClient(headWriter.take());
    // 1 = no body for llhttp: HEAD has none, a Content-Length body is counted by #forwardBody
    return this.init.method === 'HEAD' || this.#bodyRemaining > 0 ? 1 : 0;
  }

  onBody(data: Buffer, start: number, end: number): number {
    const n = end - start;
    const view = data.subarray(start, end);
    const out = this.#out;
    let ok: boolean;
    if (this.#head.mode === 'chunked') {
      ok = out.writeLatin1(n.toString(16) + CRLF);
      ok = out.write(view) && ok;
      ok = out.writeLatin1(CRLF) && ok;
    } else {
      ok = out.write(view);
    }
    this.bytesOut += n;
    if (!ok) this.#clientFull = true;
    return 0;
  }

  onMessageComplete(): number {
    if (this.#interim || this.#tunnel) return 0; // a 1xx: the final response follows; a 101: llhttp stops at its head
    if (this.#bodyRemaining > 0) return ERR.PAUSED; // the head only: #forwardBody takes the body
    this.#responseComplete = true;
    if (this.#head.mode === 'chunked') this.#writeClient(LAST_CHUNK);
    return ERR.PAUSED;
  }

  #writeClient(s: string | Buffer): void {
    this.bytesOut += s.length;
    const ok = typeof s === 'string' ? this.#out.writeLatin1(s) : this.#out.write(s);
    if (!ok) this.#clientFull = true;
  }

  // ---- the tunnel after a protocol switch ------------------------------------------------

  /** Upstream bytes of the new protocol, from `from` on, to the client as they are. */
  #tunnelOut(chunk: Buffer, from: number): void {
    const ok = this.#out.write(from === 0 ? chunk : chunk.subarray(from));
    this.bytesOut += chunk.length - from;
    if (!ok) {
      this.#clientFull = true;
      this.#lease!.conn.socket!.pause();
    }
  }

  /** Client bytes of the new protocol, to the upstream as they are (the view may be reused after). */
  tunnelIn(chunk: Buffer): void {
    if (this.#done) return;
    this.#lastActivity = performance.now();
    this.bytesIn += chunk.length;
    if (!this.#lease!.conn.writer!.write(chunk)) {
      this.#upstreamFull = true;
      this.#down.pauseForUpstream();
    }
  }

  /** The client ended its side: so does the upstream's, after what is queued for it. */
  tunnelClientEnded(): void {
    if (this.#done) return;
    const conn = this.#lease!.conn;
    conn.writer!.settle();
    conn.socket!.end();
  }

  /** The client drained what we wrote: let the upstream send again. */
  onClientDrain(): void {
    if (this.#clientFull) {
      this.#clientFull = false;
      if (this.#lease && !this.#done) this.#lease.conn.socket!.resume();
    }
  }

  // ---- endings ------------------------------------------------------------------------

  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#clearTimer();
    const lease = this.#lease!;
    // llhttp's verdict after the whole message, not only the head's: a `Connection: close` (or a
    // Transfer-Encoding) trailer makes it refuse any later response on the connection, which the
    // next request borrowing it from the pool would get as a 502 (found by the response-side fuzzer)
    const reusable = this.#requestSent && this.#upstreamKeepAlive && lease.conn.parser!.shouldKeepAlive && !this.#extraBytes && this.#head.mode !== 'close';
    if (reusable) lease.pool.release(lease.conn);
    else lease.pool.destroy(lease.conn);
    this.#down.exchangeDone(this, !this.#head.closeClient && this.#requestComplete);
  }

  /** Upstream failed: retry once (keep-alive race), answer 502/504 locally, or cut the client off. */
  #upstreamFailed(err: ProxyError): void {
    if (this.#done) return;
    const lease = this.#lease;
    if (
      lease !== null &&
      !this.#retried &&
      !this.#responseBytesSeen &&
      lease.conn.uses > 0 &&
      this.#held !== null &&
      (err.kind === 'UPSTREAM_RESET' || err.kind === 'UPSTREAM_ABORTED')
    ) {
      // The keep-alive race: a reused connection the upstream was closing. Nothing of a
      // response came, the request is replay-safe: once more, on a fresh connection.
      this.#retried = true;
      lease.pool.destroy(lease.conn);
      this.#lease = null;
      this.#requestSent = false;
      this.#pending = this.#held.slice();
      this.#pendingBytes = 0;
      for (const b of this.#pending) this.#pendingBytes += b.length;
      lease.pool
        .connectFresh()
        .then((conn) => {
          if (this.#done) conn.destroy();
          else this.#attach({ conn, pool: lease.pool });
        })
        .catch((e: unknown) => this.#fail(e as ProxyError));
      return;
    }
    this.#fail(err);
  }

  #fail(err: ProxyError): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = err;
    this.#clearTimer();
    const lease = this.#lease;
    if (lease !== null) lease.pool.destroy(lease.conn);
    if (!this.#responseStarted) {
      this.#status = err.status;
      this.#down.failBeforeResponse(this, err);
    } else {
      // never a truncated message on a live connection: the client must see the cut
      this.#client.destroy();
      this.#down.exchangeDone(this, false);
    }
  }

  /** The client went away or broke the request (parse error inside the body). */
  abort(err: ProxyError): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = err;
    if (err.kind === 'CLIENT_ABORTED') this.#status = CLIENT_CLOSED_STATUS;
    else if (!this.#responseStarted) this.#status = err.status;
    this.#clearTimer();
    // the upstream must never see a complete message past the error: cut it
    if (this.#lease !== null) this.#lease.pool.destroy(this.#lease.conn);
  }

  // ---- timers: the client connection's exchange timer, lazily re-armed ----------------
  // One Timeout per client connection, refreshed at each exchange's start (DownstreamPort
  // armExchangeTimer): a setTimeout per request cost a Timeout, its async id and often a timer
  // list (~200 bytes, bench/tools/alloc.sh). It fires `delay` after the start as before; the
  // rare re-arm at a shorter delay (a deadline near) takes a Timeout of its own.

  #armTimer(): void {
    const t = this.init.cluster.config.timeouts;
    this.#down.armExchangeTimer(Math.min(t.idleMs, t.responseHeaderMs, t.connectMs * 2 + 1000));
  }

  #clearTimer(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** The connection's exchange timer fired for this exchange (its own re-arm, if any, rules). */
  onExchangeTimer(): void {
    if (this.#timer === null) this.#onTimer();
  }

  #onTimer(): void {
    this.#timer = null;
    if (this.#done) return;
    const t = this.init.cluster.config.timeouts;
    const now = performance.now();
    if (this.#connecting) {
      this.#armTimer(); // the pool's acquire timeout answers this one
      return;
    }
    if (this.#requestSent && !this.#responseStarted && !this.#interim && now - this.#requestSentAt >= t.responseHeaderMs) {
      this.#fail(new ProxyError('UPSTREAM_RESPONSE_TIMEOUT', `no response head within ${t.responseHeaderMs} ms`));
      return;
    }
    if (now - this.#lastActivity >= t.idleMs) {
      this.#fail(new ProxyError('UPSTREAM_IDLE_TIMEOUT', `no bytes either way for ${t.idleMs} ms`));
      return;
    }
    let next = t.idleMs - (now - this.#lastActivity);
    if (this.#requestSent && !this.#responseStarted) next = Math.min(next, t.responseHeaderMs - (now - this.#requestSentAt));
    this.#timer = setTimeout(() => this.#onTimer(), Math.max(1, next));
    this.#timer.unref();
  }

  /** Activity on the client side counts against the idle timeout too. */
  touch(): void {
    this.#lastActivity = performance.now();
  }
}
