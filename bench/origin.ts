// The benchmark's origin: an mTLS HTTP/1.1 server (client certificates required, chained to the
// bench CA). Run as its own process; prints one JSON line {"listening": port} on stdout when
// ready.
//
//   node bench/origin.ts --dir <pki dir> [--port 0]
//
// GET  /small                13-byte body ("hello, world\n")
// GET  /download?bytes=N     N bytes with Content-Length, written from one reused 64 KiB block,
//                            pausing on write() === false until 'drain'
// POST /upload (or PUT)      reads the body (Content-Length or chunked), answers its length in
//                            bytes (decimal text)
// GET  /__stats              JSON: TLS connections accepted so far, how many were resumed,
//                            how many per "protocol cipher", requests, bad requests, failed
//                            handshakes. The bench
//                            reads it before and after each scenario to see what each proxy does
//                            toward its upstream (a new TLS connection per request? resumption?)
//
// It is a raw `tls.createServer` with a minimal HTTP/1.1 reader rather than node:https: on the
// 2-core bench machine the origin shares core 1 with the load generator, and node:https costs
// about 21 µs of CPU per small request here against about 13 µs for this one, so the origin
// caps the small-request numbers of the fastest peers (HAProxy, nginx) much later. Every
// response has a Content-Length; a request it does not understand gets a 400 and the
// connection is closed, and it says so on stderr (the bench reports any origin stderr).
import { createServer, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { dir: { type: 'string' }, port: { type: 'string', default: '0' } } });
if (!values.dir) {
  process.stderr.write('usage: node bench/origin.ts --dir <pki dir> [--port N]\n');
  process.exit(2);
}
const dir = values.dir;

const CRLF2 = Buffer.from('\r\n\r\n');
const MAX_HEAD = 64 * 1024;
const BLOCK = Buffer.alloc(64 * 1024, 'x');
const MAX_DOWNLOAD = 64 * 1024 ** 3;

function response(status: string, body: string, close: boolean, type = 'text/plain'): Buffer {
  return Buffer.from(`HTTP/1.1 ${status}\r\ncontent-type: ${type}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${close ? 'connection: close\r\n' : ''}\r\n${body}`, 'latin1');
}
const SMALL_BODY = 'hello, world\n';
const SMALL = response('200 OK', SMALL_BODY, false);
const SMALL_CLOSE = response('200 OK', SMALL_BODY, true);
const SMALL_HEAD = SMALL.subarray(0, SMALL.length - SMALL_BODY.length);
const SMALL_HEAD_CLOSE = SMALL_CLOSE.subarray(0, SMALL_CLOSE.length - SMALL_BODY.length);
const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n');

const stats = { connections: 0, resumed: 0, tls: {} as Record<string, number>, requests: 0, bad_requests: 0, tls_errors: 0 };

const tlsKind = (socket: TLSSocket): string => `${socket.getProtocol() ?? '?'} ${socket.getCipher()?.standardName ?? '?'}`;

interface Request {
  method: string;
  target: string;
  close: boolean;
}

/** Decodes a chunked body across reads, counting the data bytes. */
class Chunked {
  bytes = 0;
  done = false;
  #left = 0; // data bytes left in the current chunk
  #state: 'size' | 'data' | 'data-crlf' | 'trailer' = 'size';
  #line = '';

  /** Consumes from `buf` at `off`; returns the new offset. Throws on malformed input. */
  push(buf: Buffer, off: number): number {
    while (off < buf.length && !this.done) {
      if (this.#state === 'data') {
        const n = Math.min(this.#left, buf.length - off);
        this.#left -= n;
        this.bytes += n;
        off += n;
        if (this.#left === 0) this.#state = 'data-crlf';
        continue;
      }
      const nl = buf.indexOf(10, off);
      const end = nl < 0 ? buf.length : nl + 1;
      this.#line += buf.toString('latin1', off, end);
      off = end;
      if (this.#line.length > 4096) throw new Error('chunked: line too long');
      if (nl < 0) break;
      const line = this.#line.replace(/\r?\n$/, '');
      this.#line = '';
      if (this.#state === 'data-crlf') {
        if (line !== '') throw new Error('chunked: no CRLF after chunk data');
        this.#state = 'size';
      } else if (this.#state === 'size') {
        const m = /^([0-9a-fA-F]{1,15})[ \t]*(;.*)?$/.exec(line);
        if (!m) throw new Error(`chunked: bad size line ${JSON.stringify(line.slice(0, 40))}`);
        this.#left = parseInt(m[1] ?? '', 16);
        this.#state = this.#left === 0 ? 'trailer' : 'data';
      } else if (line === '') {
        this.done = true;
      }
    }
    return off;
  }
}

function handleConnection(socket: TLSSocket): void {
  socket.setNoDelay(true);
  let pending: Buffer | null = null; // unparsed bytes (a partial head, or data behind a download)
  let req: Request | null = null; // the request whose body is being read
  let bodyLeft = 0; // Content-Length body bytes still to come
  let bodyBytes = 0;
  let chunked: Chunked | null = null;
  let streaming = false; // a download is being written; reading waits
  let closing = false;

  const bad = (why: string): void => {
    stats.bad_requests++;
    process.stderr.write(`origin: bad request (${why}); closing the connection\n`);
    closing = true;
    socket.end(response('400 Bad Request', `${why}\n`, true));
  };

  const finish = (close: boolean): void => {
    if (close) {
      closing = true;
      socket.end();
    }
  };

  const download = (r: Request, total: number): void => {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${total}\r\n${r.close ? 'connection: close\r\n' : ''}\r\n`);
    let left = total;
    streaming = true;
    const pump = (): void => {
      while (left > 0) {
        const n = Math.min(left, BLOCK.length);
        left -= n;
        if (!socket.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n)) && left > 0) {
          socket.once('drain', pump);
          return;
        }
      }
      streaming = false;
      finish(r.close);
      if (!closing && pending) {
        const rest = pending;
        pending = null;
        onData(rest);
      }
    };
    pump();
  };

  const dispatch = (r: Request, body: number): void => {
    stats.requests++;
    const q = r.target.indexOf('?');
    const path = q < 0 ? r.target : r.target.slice(0, q);
    if (path === '/small' && (r.method === 'GET' || r.method === 'HEAD')) {
      socket.write(r.method === 'HEAD' ? (r.close ? SMALL_HEAD_CLOSE : SMALL_HEAD) : r.close ? SMALL_CLOSE : SMALL);
      return finish(r.close);
    }
    if (path === '/download' && r.method === 'GET') {
      const bytes = Number(new URLSearchParams(q < 0 ? '' : r.target.slice(q + 1)).get('bytes') ?? 'NaN');
      if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > MAX_DOWNLOAD) {
        socket.write(response('400 Bad Request', 'bytes must be a whole number\n', r.close));
        return finish(r.close);
      }
      return download(r, bytes);
    }
    if (path === '/upload' && (r.method === 'POST' || r.method === 'PUT')) {
      socket.write(response('200 OK', String(body), r.close));
      return finish(r.close);
    }
    if (path === '/__stats' && r.method === 'GET') {
      // The bench's own look at the stats is not traffic from a proxy: take it out again.
      stats.connections--;
      stats.requests--;
      const kind = tlsKind(socket);
      stats.tls[kind] = (stats.tls[kind] ?? 1) - 1;
      if (socket.isSessionReused()) stats.resumed--;
      socket.write(response('200 OK', JSON.stringify(stats), r.close, 'application/json'));
      return finish(r.close);
    }
    socket.write(response('404 Not Found', '', r.close));
    finish(r.close);
  };

  const head = (text: string): Request | null => {
    const lineEnd = text.indexOf('\r\n');
    const line = lineEnd < 0 ? text : text.slice(0, lineEnd);
    const m = /^([A-Z]+) (\S+) HTTP\/1\.([01])$/.exec(line);
    if (!m) {
      bad(`request line ${JSON.stringify(line.slice(0, 80))}`);
      return null;
    }
    const lower = text.toLowerCase();
    const conn = /\r\nconnection:([^\r]*)/.exec(lower)?.[1] ?? '';
    const r: Request = { method: m[1] ?? '', target: m[2] ?? '', close: m[3] === '0' ? !/\bkeep-alive\b/.test(conn) : /\bclose\b/.test(conn) };
    const te = /\r\ntransfer-encoding:([^\r]*)/.exec(lower)?.[1]?.trim();
    const cl = /\r\ncontent-length:[ \t]*([^\r]*)/.exec(lower)?.[1]?.trim();
    if (te !== undefined) {
      if (te !== 'chunked') {
        bad(`transfer-encoding ${te}`);
        return null;
      }
      chunked = new Chunked();
    } else if (cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl)) {
        bad(`content-length ${cl}`);
        return null;
      }
      bodyLeft = Number(cl);
    } else {
      bodyLeft = 0;
    }
    bodyBytes = 0;
    if (/\r\nexpect:[ \t]*100-continue/.test(lower)) socket.write(CONTINUE);
    return r;
  };

  function onData(chunk: Buffer): void {
    if (closing) return;
    if (streaming) {
      // A request behind a download (pipelining): keep it until the download is written.
      pending = pending ? Buffer.concat([pending, chunk]) : chunk;
      return;
    }
    const data = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = null;
    let off = 0;
    while (off < data.length && !closing && !streaming) {
      if (req === null) {
        const end = data.indexOf(CRLF2, off);
        if (end < 0) {
          if (data.length - off > MAX_HEAD) return bad('head too large');
          pending = Buffer.from(data.subarray(off));
          return;
        }
        const r = head(data.toString('latin1', off, end));
        off = end + 4;
        if (!r) return;
        req = r;
      }
      if (chunked) {
        try {
          off = chunked.push(data, off);
        } catch (err) {
          return bad((err as Error).message);
        }
        if (!chunked.done) return;
        bodyBytes = chunked.bytes;
        chunked = null;
      } else if (bodyLeft > 0) {
        const n = Math.min(bodyLeft, data.length - off);
        bodyLeft -= n;
        bodyBytes += n;
        off += n;
        if (bodyLeft > 0) return;
      }
      const r = req;
      req = null;
      dispatch(r, bodyBytes);
    }
    if (off < data.length && !closing) pending = Buffer.from(data.subarray(off));
  }

  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
}

const server = createServer(
  {
    key: readFileSync(join(dir, 'server-key.pem')),
    cert: readFileSync(join(dir, 'server.pem')),
    ca: readFileSync(join(dir, 'ca.pem')),
    requestCert: true,
    rejectUnauthorized: true,
  },
  handleConnection,
);
server.on('secureConnection', (socket: TLSSocket) => {
  stats.connections++;
  if (socket.isSessionReused()) stats.resumed++;
  const kind = tlsKind(socket);
  stats.tls[kind] = (stats.tls[kind] ?? 0) + 1;
});
// Counted, not logged: wrk drops its connections wherever they are when its time is up, some
// of them mid-handshake.
server.on('tlsClientError', () => stats.tls_errors++);
server.listen(Number(values.port), '127.0.0.1', () => {
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  process.stdout.write(`${JSON.stringify({ listening: port })}\n`);
});
const stop = (): void => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
