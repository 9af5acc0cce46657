// The baseline peer: the simplest idiomatic Node.js mTLS reverse proxy. node:https server that
// requires client certificates, node:https.request through a keep-alive Agent that presents its
// own client certificate to the origin, bodies piped both ways. No header rules, no limits,
// no logging: what mtls-proxy has to beat. Prints {"listening": port} on stdout when ready.
//
//   node bench/peers/node-proxy.ts --dir <pki dir> --upstream 127.0.0.1:PORT [--port 0]
import { Agent, createServer, request, type ServerOptions } from 'node:https';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, upstream: { type: 'string' }, port: { type: 'string', default: '0' } },
});
if (!values.dir || !values.upstream) {
  process.stderr.write('usage: node bench/peers/node-proxy.ts --dir <pki dir> --upstream host:port [--port N]\n');
  process.exit(2);
}
const dir = values.dir;
const sep = values.upstream.lastIndexOf(':');
const upstreamHost = values.upstream.slice(0, sep);
const upstreamPort = Number(values.upstream.slice(sep + 1));
const ca = readFileSync(join(dir, 'ca.pem'));

const agent = new Agent({
  keepAlive: true,
  ca,
  cert: readFileSync(join(dir, 'proxy.pem')),
  key: readFileSync(join(dir, 'proxy-key.pem')),
  servername: 'localhost',
});

// RFC 9110 §7.6.1: connection-specific fields are not forwarded.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function strip(headers: IncomingMessage['headers']): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const upstream = request(
    {
      agent,
      host: upstreamHost,
      port: upstreamPort,
      servername: 'localhost',
      method: req.method,
      path: req.url,
      headers: strip(req.headers),
    },
    (ures) => {
      // The client may have gone away meanwhile (wrk drops its connections mid-request when its
      // time is up): pipeline() throws on a destroyed destination.
      if (res.destroyed) {
        ures.destroy();
        return;
      }
      res.writeHead(ures.statusCode ?? 502, strip(ures.headers));
      pipeline(ures, res, (err) => {
        if (err) res.destroy();
      });
    },
  );
  upstream.on('error', () => {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-length': '0' });
      res.end();
    } else {
      res.destroy();
    }
  });
  pipeline(req, upstream, () => {});
}

const options: ServerOptions = {
  key: readFileSync(join(dir, 'server-key.pem')),
  cert: readFileSync(join(dir, 'server.pem')),
  ca,
  requestCert: true,
  rejectUnauthorized: true,
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
  agent.destroy();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
