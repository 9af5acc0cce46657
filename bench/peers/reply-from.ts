// The best Node.js peer measured for issue 5: fastify (HTTPS, client certificates required)
// with @fastify/reply-from forwarding over an undici Agent that presents its own client
// certificate to the mTLS origin and verifies the origin's. Prints {"listening": port} on stdout
// when ready.
//
//   node bench/peers/reply-from.ts --dir <pki dir> --upstream 127.0.0.1:PORT [--port 0]
//
// Needs the devDependencies `fastify` and `@fastify/reply-from` (bench/run.ts skips this peer,
// with a note, when they are not installed). Settings are the libraries' defaults except:
// logger off (the other peers log nothing per request either), keep-alive timeouts long enough
// to outlive a scenario (as for every peer), and a pass-through content-type parser so request
// bodies (the upload scenario) are streamed to the origin instead of rejected with 415 (fastify
// parses only JSON and text by default) or buffered.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';

const { values } = parseArgs({
  options: { dir: { type: 'string' }, upstream: { type: 'string' }, port: { type: 'string', default: '0' } },
});
if (!values.dir || !values.upstream) {
  process.stderr.write('usage: node bench/peers/reply-from.ts --dir <pki dir> --upstream host:port [--port N]\n');
  process.exit(2);
}
const dir = values.dir;
const ca = readFileSync(join(dir, 'ca.pem'));

const app = Fastify({
  logger: false,
  https: {
    key: readFileSync(join(dir, 'server-key.pem')),
    cert: readFileSync(join(dir, 'server.pem')),
    ca,
    requestCert: true,
    rejectUnauthorized: true,
  },
  keepAliveTimeout: 120_000,
});

// Hand every request body to reply-from as the raw stream (its README's recipe for proxying
// content without parsing it).
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

await app.register(replyFrom, {
  // The origin's certificate names localhost; connect to the address given.
  base: `https://${values.upstream}`,
  undici: {
    // reply-from's defaults (connections 128, pipelining 1) with a keep-alive as long as the
    // other peers', and mTLS toward the origin: client certificate, CA, certificate checked.
    connections: 128,
    pipelining: 1,
    keepAliveTimeout: 120_000,
    connect: {
      ca,
      cert: readFileSync(join(dir, 'proxy.pem')),
      key: readFileSync(join(dir, 'proxy-key.pem')),
      servername: 'localhost',
      rejectUnauthorized: true,
    },
  },
});

app.all('/*', (request, reply) => reply.from(request.url));

const address = await app.listen({ port: Number(values.port), host: '127.0.0.1' });
process.stdout.write(`${JSON.stringify({ listening: Number(new URL(address).port) })}\n`);

const stop = (): void => {
  void app.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
