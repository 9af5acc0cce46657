// One client connection on an http-mode listener. It runs the request parser and the
// phases up to "choose upstream"; the Exchange takes it from there. Requests are handled
// one at a time: the parser pauses at each message's end, so pipelined requests wait
// (unparsed) until the response before them is complete, and are answered in order.
// Every chunk is parsed completely before any of it is forwarded.
import type { TLSSocket } from 'node:tls';
import { ProxyError } from '../errors.ts';
import { isSharedReadView, readIntoShared } from '../net/client-reads.ts';
import { SocketWriter } from '../net/socket-writer.ts';
import type { ClientIdentity } from '../net/identity.ts';
import { xfccOf } from '../net/identity.ts';
import type { ListenerContext, RequestRecord } from './context.ts';
import { Exchange, type DownstreamPort } from './exchange.ts';
import { clientAddress, newRequestId } from './headers.ts';
import { ERR, HttpParser, TYPE_REQUEST, type ParserHandler } from './llhttp.ts';
import { requestParseError } from './parse-error.ts';
import { CLIENT_CLOSED_STATUS, localResponse } from './local-response.ts';
import { normaliseTarget, requestIdOf, upstreamHead, websocketUpgrade } from './request-filters.ts';
import { RequestHead } from './request-head.ts';
import { ResponseHead } from './response-head.ts';

type TimerKind = 'header' | 'idle' | 'none';

export class DownstreamConnection implements ParserHandler, DownstreamPort {
  readonly socket: TLSSocket;
  /** Everything the exchanges write to the socket goes through this (src/net/socket-writer.ts). */
  readonly writer: SocketWriter;
  readonly ctx: ListenerContext;
  readonly #identity: ClientIdentity | null;
  readonly #allowed: boolean;
  readonly #clientAddr: string;
  #xfcc: string | null | undefined = undefined;
  readonly #parser: HttpParser;
  readonly #head: RequestHead;
  readonly responseHead = new ResponseHead();

  #exchange: Exchange | null = null;
  #toStart: Exchange | null = null;
  /** The exchange whose upstream switched protocols: every client byte is relayed to it. */
  #tunnel: Exchange | null = null;
  #error: ProxyError | null = null;
  #inBody = false;
  #inTrailers = false;
  /** Unparsed bytes after a complete message: the next pipelined request(s). */
  #held: Buffer | null = null;
  /**
   * Bytes of a Content-Length request body still to come. They bypass llhttp (no copy into
   * wasm memory, no callback per chunk): #takeBody hands them to the exchange as they arrive.
   */
  #bodyRemaining = 0;
  #awaitingResponse = false;
  #upstreamFull = false;
  /** After an Upgrade request: answer it, then close (never parse past a protocol switch). */
  #lastRequest = false;
  #closing = false;
  #draining = false;

  #timer: NodeJS.Timeout;
  #timerKind: TimerKind = 'header';
  /** The exchanges' timer (exchange.ts), made once and refreshed per request. */
  #exchangeTimer: NodeJS.Timeout | null = null;
  #exchangeTimerMs = 0;
  #deadline: number;
  #requestStart = 0;
  #requestWallStart = 0;
  #headStarted = false;

  constructor(socket: TLSSocket, ctx: ListenerContext, identity: ClientIdentity | null, allowed: boolean) {
    this.socket = socket;
    this.writer = new SocketWriter(socket, this.#onDrain);
    this.ctx = ctx;
    this.#identity = identity;
    this.#allowed = allowed;
    this.#clientAddr = clientAddress(socket.remoteAddress);
    this.#head = new RequestHead(ctx.config.limits);
    this.#parser = new HttpParser(TYPE_REQUEST, this);
    const limits = ctx.config.limits;
    // slowloris: the first request's head must arrive within header_timeout of the handshake
    this.#deadline = performance.now() + limits.headerTimeoutMs;
    this.#timer = setTimeout(this.#onTimer, Math.min(limits.headerTimeoutMs, limits.idleTimeoutMs));
    this.#timer.unref();
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
    // reads land in the listeners' shared buffer (src/net/client-reads.ts): #onRead. Bytes the
    // socket took in before this still come as 'data', as does anything pushed back.
    readIntoShared(socket, this.#onRead);
  }

  get busy(): boolean {
    return this.#exchange !== null;
  }

  /** Server is draining: close now if idle, else after the current response. */
  drain(): void {
    this.#draining = true;
    if (this.#exchange === null && this.#timerKind === 'idle') this.#close();
  }

  // ---- socket events ------------------------------------------------------------------

  /**
   * One read, in the shared buffer: valid until this returns. Bytes may still wait in the
   * socket's queue (taken in before the shared buffer was set up, or pushed back by #onData
   * while a response is awaited): then this read goes behind them, as a copy, and comes back
   * as 'data' in order. A paused socket may still get here: Node's TLS layer hands out every
   * record it decrypted from one socket read, pause or not. Those few records (a read is at
   * most 64 KiB) are taken as if they came before the pause (#onData handles every state),
   * rather than queued as copies: an upload whose upstream is slower than its client pauses
   * at nearly every read, and copying there cost a fresh 16 KiB Buffer for ~45% of its reads.
   */
  #onRead = (nread: number, buffer: Buffer): boolean => {
    const s = this.socket;
    if (s.readableLength > 0) {
      s.push(Buffer.copyBytesFrom(buffer, 0, nread));
      return true;
    }
    this.#onData(buffer.subarray(0, nread));
    // what outlives this read: the pipelined bytes held for later, and body bytes the
    // exchange has not written yet or keeps for a replay
    const held = this.#held;
    if (held !== null && isSharedReadView(held)) this.#held = Buffer.copyBytesFrom(held);
    this.#exchange?.detachViews();
    return true;
  };

  #onData = (chunk: Buffer): void => {
    if (this.#closing) return;
    if (this.#tunnel !== null) {
      this.#tunnel.tunnelIn(chunk);
      return;
    }
    if (this.#bodyRemaining > 0) {
      const ex = this.#exchange;
      if (ex === null) return;
      ex.touch();
      this.#takeBody(chunk);
      ex.flush();
      this.#updateReading();
      return;
    }
    if (this.#awaitingResponse) {
      // The next request(s), pipelined before this response went out: back into the socket's
      // buffer, unparsed, and the socket paused until exchangeDone. Pausing only now, not at
      // every request's end, spares a closed-loop client's connection a pause and a resume
      // (a nextTick and two events) per request.
      const s = this.socket;
      s.pause();
      s.unshift(isSharedReadView(chunk) ? Buffer.copyBytesFrom(chunk) : chunk);
      return;
    }
    if (this.#timerKind === 'idle') this.#setTimer('header');
    this.#exchange?.touch();
    this.#execute(chunk);
  };

  /** Body bytes of a Content-Length request; what follows its end is the next request, held. */
  #takeBody(chunk: Buffer): void {
    const n = Math.min(this.#bodyRemaining, chunk.length);
    this.#exchange!.queueBody(n === chunk.length ? chunk : chunk.subarray(0, n));
    this.#bodyRemaining -= n;
    if (this.#bodyRemaining === 0) {
      this.#exchange!.markRequestComplete();
      this.#awaitingResponse = true;
      if (n < chunk.length) this.#held = chunk.subarray(n);
    }
  }

  #execute(chunk: Buffer): void {
    const parser = this.#parser;
    const ret = parser.execute(chunk);
    if (ret === ERR.OK || ret === ERR.PAUSED || ret === ERR.PAUSED_UPGRADE) {
      if (ret === ERR.PAUSED && this.#bodyRemaining > 0) {
        // paused after a head whose Content-Length body we forward ourselves
        if (parser.stoppedAt < chunk.length) this.#takeBody(chunk.subarray(parser.stoppedAt));
      } else if (ret !== ERR.OK) {
        // paused at a message's end; keep what follows for after the response
        if (parser.stoppedAt < chunk.length) this.#held = chunk.subarray(parser.stoppedAt);
        this.#awaitingResponse = true;
        if (ret === ERR.PAUSED_UPGRADE) this.#lastRequest = true;
      }
      const ex = this.#toStart;
      if (ex !== null) {
        this.#toStart = null;
        ex.start();
      } else {
        this.#exchange?.flush();
      }
      this.#updateReading();
      return;
    }
    this.#parseFailed(ret);
  }

  #parseFailed(ret: number): void {
    const err = this.#error ?? requestParseError(this.#parser, ret);
    this.#toStart = null;
    const ex = this.#exchange;
    if (ex !== null) {
      // an error inside the body: the upstream connection is cut, never completed
      ex.abort(err);
      this.#exchange = null;
      if (!ex.responseStarted) this.#answerAndClose(err, ex.init.id, ex);
      else {
        this.#record(ex, ex.status, err);
        this.socket.destroy();
      }
      return;
    }
    this.#answerAndClose(err, null, null);
  }

  #onEnd = (): void => {
    // A tunnel (after a protocol switch) passes the half-close on, and ends when the upstream does.
    if (this.#tunnel !== null) {
      this.#tunnel.tunnelClientEnded();
      return;
    }
    // The client half-closed. A complete request still gets its response, then we close;
    // a request cut short is aborted (the upstream never sees it complete).
    if (this.#exchange !== null && this.#awaitingResponse) {
      this.#lastRequest = true;
      return;
    }
    this.#abortInFlight();
    this.#close();
  };

  #onError = (): void => {
    // 'close' follows and tears down
  };

  #onClose = (): void => {
    this.#closing = true;
    clearTimeout(this.#timer);
    if (this.#exchangeTimer !== null) clearTimeout(this.#exchangeTimer);
    this.#abortInFlight();
    this.#parser.destroy();
    this.writer.drop();
  };

  #onDrain = (): void => {
    this.#exchange?.onClientDrain();
  };

  #abortInFlight(): void {
    const ex = this.#exchange;
    if (ex === null) return;
    this.#exchange = null;
    this.#tunnel = null;
    this.#toStart = null;
    const err = new ProxyError('CLIENT_ABORTED', 'client closed the connection');
    ex.abort(err);
    this.#record(ex, CLIENT_CLOSED_STATUS, err);
  }

  // ---- parser callbacks (request mode) --------------------------------------------------

  onMessageBegin(): number {
    this.#head.reset();
    this.#inBody = false;
    this.#inTrailers = false;
    this.#error = null;
    this.#requestStart = performance.now();
    this.#requestWallStart = Date.now();
    this.#headStarted = true;
    if (this.#timerKind !== 'header') this.#setTimer('header');
    return 0;
  }

  onUrl(data: Buffer, start: number, end: number): number {
    return this.#check(this.#head.onUrl(data, start, end));
  }

  onStatus(): number {
    return 0;
  }

  onHeaderField(data: Buffer, start: number, end: number): number {
    if (this.#inBody && !this.#inTrailers) {
      this.#inTrailers = true;
      this.#head.startTrailers();
    }
    return this.#check(this.#head.onHeaderField(data, start, end));
  }

  onHeaderValue(data: Buffer, start: number, end: number): number {
    return this.#check(this.#head.onHeaderValue(data, start, end));
  }

  #check(err: ProxyError | null): number {
    if (err === null) return 0;
    this.#error = err;
    return -1;
  }

  onHeadersComplete(_status: number, upgrade: boolean, keepAlive: boolean): number {
    const p = this.#parser;
    const head = this.#head;
    const err = head.complete(p.method, p.httpMajor, p.httpMinor, keepAlive, upgrade);
    if (err !== null) return this.#check(err);
    this.#inBody = true;
    this.#headStarted = false;
    this.#setTimer('none');
    // phase: identity check (the handshake verified the chain; the allow-list is ours)
    if (!this.#allowed) return this.#check(new ProxyError('FORBIDDEN', 'client certificate is not on the allow-list'));
    // phase: request filters
    const form = normaliseTarget(head);
    if (form instanceof ProxyError) return this.#check(form);
    const route = this.ctx.router.match(form.host, form.target);
    const cluster = this.ctx.clusters.get(route.upstream);
    if (cluster === undefined) return this.#check(new ProxyError('INTERNAL', `route names unknown upstream "${route.upstream}"`));
    const id = requestIdOf(head);
    const host = form.host !== '' ? form.host : (cluster.config.tls.serverName ?? cluster.config.endpoints[0]?.host ?? 'localhost');
    if (this.#xfcc === undefined) this.#xfcc = this.#identity ? xfccOf(this.#identity) : null;
    const upgradeTo = upgrade && this.ctx.config.websocket ? websocketUpgrade(head) : null;
    const ex = new Exchange(this, {
      id,
      method: head.method,
      target: route.target,
      host,
      path: form.path,
      upstreamHead: upstreamHead(head, { target: route.target, host, requestId: id, clientAddr: this.#clientAddr, xfcc: this.#xfcc, upgrade: upgradeTo }),
      chunked: head.chunked,
      hasBody: head.chunked || head.contentLength > 0,
      clientKeepAlive: keepAlive && !upgrade,
      clientMinor: head.versionMinor,
      upgrade: upgradeTo,
      cluster,
      startedAt: this.#requestStart,
      wallStart: this.#requestWallStart,
      headBytesIn: head.byteCount + 2,
    });
    this.#exchange = ex;
    this.#toStart = ex;
    // A Content-Length body: llhttp is told there is none (return 1), completes the message
    // at once and pauses (onMessageComplete); #takeBody counts the body bytes from there.
    // This is the request's one body length: a request with Transfer-Encoding is chunked or
    // refused by head.complete, and llhttp refuses a second Content-Length or a bad value.
    if (!head.chunked && head.contentLength > 0 && !upgrade && Number.isSafeInteger(head.contentLength)) {
      this.#bodyRemaining = head.contentLength;
      return 1;
    }
    return 0;
  }

  onBody(data: Buffer, start: number, end: number): number {
    this.#exchange!.queueBody(data.subarray(start, end));
    return 0;
  }

  onMessageComplete(): number {
    const err = this.#head.endOfMessage();
    if (err !== null) return this.#check(err);
    // with a Content-Length body still to come (#bodyRemaining), #takeBody completes it
    if (this.#bodyRemaining === 0) this.#exchange?.markRequestComplete();
    return ERR.PAUSED;
  }

  // ---- DownstreamPort ------------------------------------------------------------------

  pauseForUpstream(): void {
    this.#upstreamFull = true;
    this.#updateReading();
  }

  resumeFromUpstream(): void {
    this.#upstreamFull = false;
    this.#updateReading();
  }

  exchangeDone(ex: Exchange, reusable: boolean): void {
    if (this.#exchange !== ex) return;
    this.#exchange = null;
    this.#tunnel = null;
    // Answered before the whole body came (an early 413, say): the exchange reports the
    // connection not reusable (its request is incomplete), so it closes below and the rest of
    // the body is never parsed as a request (test/request-body-framing.test.ts).
    this.#bodyRemaining = 0;
    this.#record(ex, ex.status, ex.error);
    if (!reusable || this.#lastRequest || this.#draining || this.ctx.isDraining() || this.#closing) {
      this.#close();
      return;
    }
    this.#awaitingResponse = false;
    // the upstream that could not take more body was this exchange's: an upstream that answered
    // before it read the whole body (its writes still queued) never reports the drain to us
    this.#upstreamFull = false;
    this.#setTimer('idle');
    this.#parser.resume();
    const held = this.#held;
    if (held !== null) {
      this.#held = null;
      this.#setTimer('header');
      this.#execute(held);
    } else {
      this.#updateReading();
    }
  }

  failBeforeResponse(ex: Exchange, err: ProxyError): void {
    if (this.#exchange !== ex) return;
    this.#exchange = null;
    this.#answerAndClose(err, ex.init.id, ex);
  }

  tunnelStarted(ex: Exchange): void {
    if (this.#exchange !== ex || this.#closing) return;
    this.#tunnel = ex;
    // the bytes that came behind the handshake (held, or waiting in the socket's buffer since)
    // are the new protocol's: relayed now, in order
    this.#awaitingResponse = false;
    const held = this.#held;
    this.#held = null;
    if (held !== null) ex.tunnelIn(held);
    this.#updateReading();
    // a FIN that came (behind no bytes) while the handshake was answered: passed on now
    if (this.socket.readableEnded) ex.tunnelClientEnded();
  }

  armExchangeTimer(ms: number): void {
    const t = this.#exchangeTimer;
    if (t !== null && this.#exchangeTimerMs === ms) {
      t.refresh();
      return;
    }
    if (t !== null) clearTimeout(t);
    this.#exchangeTimerMs = ms;
    this.#exchangeTimer = setTimeout(this.#onExchangeTimer, ms);
    this.#exchangeTimer.unref();
  }

  #onExchangeTimer = (): void => {
    this.#exchange?.onExchangeTimer();
  };

  // ---- helpers ---------------------------------------------------------------------------

  #updateReading(): void {
    const s = this.socket;
    const ex = this.#exchange;
    // Closing: keep reading (#onData discards) so the client's FIN is seen and the socket freed
    // at once, the lingering close of RFC 9112 §9.6 (paused, the socket waited out the 5 s timer
    // and then reset); found by the corpus replay's open-connection check.
    // Awaiting a response, reading goes on until bytes arrive (#onData pushes them back):
    // paused while they wait in the socket's buffer.
    const stop = !this.#closing && ((this.#awaitingResponse && s.readableLength > 0) || this.#upstreamFull || (ex !== null && !ex.connected));
    if (stop) {
      if (!s.isPaused()) s.pause();
    } else if (s.isPaused()) {
      s.resume();
    }
  }

  #answerAndClose(err: ProxyError, id: string | null, ex: Exchange | null): void {
    if (this.#closing) return;
    const requestId = id ?? newRequestId();
    this.#record(ex, err.status, err, requestId);
    this.ctx.logger.debug({ err: err.code, reason: err.message, client: this.#clientAddr }, 'request refused');
    this.writer.settle();
    this.socket.end(localResponse(err, requestId), 'latin1');
    this.#close();
  }

  #close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#updateReading();
    const s = this.socket;
    if (!s.destroyed) {
      this.writer.settle();
      s.end();
      // a peer that never reads our FIN must not hold the socket forever
      this.#timerKind = 'idle';
      this.#deadline = performance.now() + Math.min(5000, this.ctx.config.limits.idleTimeoutMs);
    }
  }

  #setTimer(kind: TimerKind): void {
    this.#timerKind = kind;
    const l = this.ctx.config.limits;
    if (kind === 'header') this.#deadline = performance.now() + l.headerTimeoutMs;
    else if (kind === 'idle') this.#deadline = performance.now() + l.idleTimeoutMs;
  }

  #onTimer = (): void => {
    const l = this.ctx.config.limits;
    const now = performance.now();
    if (this.#timerKind !== 'none' && now >= this.#deadline) {
      if (this.#closing) {
        this.socket.destroy();
        return;
      }
      if (this.#timerKind === 'header' && this.#headStarted) {
        this.#answerAndClose(new ProxyError('HEADER_TIMEOUT', `request head not received within ${l.headerTimeoutMs} ms`), null, null);
      } else {
        this.#close();
      }
    }
    if (!this.socket.destroyed) {
      const next = this.#timerKind === 'none' ? Math.min(l.headerTimeoutMs, l.idleTimeoutMs) : Math.max(1, this.#deadline - now);
      this.#timer = setTimeout(this.#onTimer, next);
      this.#timer.unref();
    }
  };

  #record(ex: Exchange | null, status: number, err: ProxyError | null, id?: string): void {
    const head = this.#head;
    const idn = this.#identity;
    const started = ex ? ex.init.startedAt : this.#requestStart || performance.now();
    const rec: RequestRecord = {
      id: ex ? ex.init.id : (id ?? newRequestId()),
      ts: ex ? ex.init.wallStart : this.#requestWallStart || Date.now(),
      listener: this.ctx.config.name,
      clientAddr: this.#clientAddr,
      clientSubject: idn ? idn.subject : null,
      clientSha256: idn ? idn.sha256 : null,
      method: ex ? ex.init.method : head.method,
      host: ex ? ex.init.host : head.host,
      path: ex ? ex.init.path : head.target.split('?', 1)[0]!,
      status,
      upstream: ex ? ex.init.cluster.name : null,
      endpoint: ex ? ex.endpoint : null,
      bytesIn: ex ? ex.bytesIn : 0,
      bytesOut: ex ? ex.bytesOut : 0,
      durationMs: Math.round((performance.now() - started) * 1000) / 1000,
      error: err ? err.code : null,
    };
    this.ctx.onRequest(rec);
  }
}
