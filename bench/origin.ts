// The benchmark's origin: an mTLS HTTPS server (client certificates required, chained to the
// bench CA) with three endpoints. Run as its own process; prints one JSON line
// {"listening": port} on stdout when ready.
//
//   node bench/origin.ts --dir <pki dir> [--port 0]
//
// GET  /small                13-byte body ("hello, world\n")
// GET  /download?bytes=N     N bytes with Content-Length, written from one reused 64 KiB block,
//                            pausing on write() === false until 'drain'
// POST /upload               reads the body, answers its length in bytes (decimal text)
import { createServer, type ServerOptions } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { dir: { type: 'string' }, port: { type: 'string', default: '0' } } });
if (!values.dir) {
  process.stderr.write('usage: node bench/origin.ts --dir <pki dir> [--port N]\n');
  process.exit(2);
}
const dir = values.dir;

const SMALL = Buffer.from('hello, world\n');
const BLOCK = Buffer.alloc(64 * 1024, 'x');
const MAX_DOWNLOAD = 64 * 1024 ** 3;

function download(res: ServerResponse, total: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, BLOCK.length);
      left -= n;
      if (!res.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
        if (left > 0) res.once('drain', pump);
        else res.end();
        return;
      }
    }
    res.end();
  };
  // A client that goes away mid-body: stop writing (no further 'drain' will come).
  res.once('close', () => (left = 0));
  pump();
}

function upload(req: IncomingMessage, res: ServerResponse): void {
  let n = 0;
  req.on('data', (chunk: Buffer) => (n += chunk.length));
  req.on('end', () => {
    const body = String(n);
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  });
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (path === '/small' && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(SMALL.length) });
    res.end(req.method === 'HEAD' ? undefined : SMALL);
    return;
  }
  if (path === '/download' && req.method === 'GET') {
    const bytes = Number(new URLSearchParams(q < 0 ? '' : url.slice(q + 1)).get('bytes') ?? 'NaN');
    if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > MAX_DOWNLOAD) {
      res.writeHead(400, { 'content-length': '0' });
      res.end();
      return;
    }
    download(res, bytes);
    return;
  }
  if (path === '/upload' && (req.method === 'POST' || req.method === 'PUT')) {
    upload(req, res);
    return;
  }
  req.resume();
  res.writeHead(404, { 'content-length': '0' });
  res.end();
}

const options: ServerOptions = {
  key: readFileSync(join(dir, 'server-key.pem')),
  cert: readFileSync(join(dir, 'server.pem')),
  ca: readFileSync(join(dir, 'ca.pem')),
  requestCert: true,
  rejectUnauthorized: true,
  // Longer than a bench run, so pooled proxy connections are not closed by the origin
  // between scenarios (the keep-alive race is a test's subject, not the benchmark's).
  keepAliveTimeout: 120_000,
};
const server = createServer(options, handle);
server.listen(Number(values.port), '127.0.0.1', () => {
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  process.stdout.write(`${JSON.stringify({ listening: port })}\n`);
});
const stop = (): void => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
