// HAProxy and nginx from Debian's packages as bench peers: the configurations bench/run.ts
// writes into the run's temp folder, and the command lines that start them in the foreground.
// Both do what the Node peers do, and nothing more: TLS termination that requires a client
// certificate chained to the bench CA, HTTP/1.1 to the origin over TLS with the proxy's own
// client certificate, the origin's certificate verified (CA + name "localhost"), upstream
// connections kept alive and reused, no logging per request, one process/thread serving.
// TLS versions, cipher suites and groups are each tool's defaults, which with Debian's OpenSSL
// 3.0 are the same as Node's (TLS 1.3, TLS_AES_256_GCM_SHA384 negotiated, X25519 toward the
// client); bench/run.ts reports what every leg negotiated, so a difference would show.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface NativePeer {
  command: string;
  args: string[];
}

/** Keep-alive and timeouts for every peer: longer than a bench run, so no peer closes early. */
const IDLE_S = 120;

/**
 * HAProxy (2.6 in bookworm). One process (no master-worker: `-db` keeps it in the foreground)
 * with `nbthread 1`.
 */
export function haproxy(dir: string, port: number, originPort: number): NativePeer {
  // HAProxy wants the certificate and its key in one PEM file (haproxyPems writes them).
  const pem = (name: string): string => join(dir, `haproxy-${name}.pem`);
  const cfg = `# written by bench/run.ts
global
  # one thread: each proxy gets one core (taskset -c 0)
  nbthread 1
  # the bench opens at most ~100 connections; more would need a higher fd limit
  maxconn 4096
  # no "log" line: nothing is logged, as for the other peers

defaults
  mode http
  timeout connect 5s
  timeout client ${IDLE_S}s
  timeout server ${IDLE_S}s
  timeout http-keep-alive ${IDLE_S}s
  # the default (option http-keep-alive): keep-alive on both sides

frontend edge
  # TLS termination; a client certificate chained to the bench CA is required
  bind 127.0.0.1:${port} ssl crt ${pem('server')} ca-file ${join(dir, 'ca.pem')} verify required
  default_backend origin

backend origin
  # reuse idle upstream connections for any request, including the first request of a new
  # client connection (the default, "safe", opens a new upstream connection for those: a new
  # TLS handshake toward the origin per request in the Connection: close scenario, which no
  # other peer does)
  http-reuse always
  # TLS to the origin with the proxy's client certificate; the origin's certificate verified
  # against the bench CA and the name localhost; SNI localhost. Session resumption toward the
  # origin is HAProxy's default (on).
  server origin 127.0.0.1:${originPort} ssl crt ${pem('proxy')} ca-file ${join(dir, 'ca.pem')} verify required verifyhost localhost sni str(localhost)
`;
  const path = join(dir, 'haproxy.cfg');
  writeFileSync(path, cfg);
  return { command: 'haproxy', args: ['-db', '-f', path] };
}

/**
 * HAProxy as a TCP relay (`mode tcp`): bytes through, no TLS work. The client's TLS session
 * runs end to end with the origin, which checks the client's certificate itself. Not a peer:
 * the reference for the 256 MiB transfers, the least any proxy on its own core costs there
 * (the bytes still cross from one core to the other and back, which a direct transfer on one
 * core never does).
 */
export function haproxyTcpRelay(dir: string, port: number, originPort: number): NativePeer {
  const cfg = `# written by bench/run.ts: the TCP relay reference for the bulk transfers
global
  nbthread 1
  maxconn 4096

defaults
  mode tcp
  timeout connect 5s
  timeout client ${IDLE_S}s
  timeout server ${IDLE_S}s

listen relay
  bind 127.0.0.1:${port}
  server origin 127.0.0.1:${originPort}
`;
  const path = join(dir, 'haproxy-tcp-relay.cfg');
  writeFileSync(path, cfg);
  return { command: 'haproxy', args: ['-db', '-f', path] };
}

/** Writes the combined cert+key PEMs HAProxy reads (`crt`). */
export function haproxyPems(dir: string, files: Record<string, string>): void {
  // createDevPki()'s PEMs do not end with a newline
  const both = (cert: string, key: string): string => `${(files[cert] ?? '').trimEnd()}\n${(files[key] ?? '').trimEnd()}\n`;
  writeFileSync(join(dir, 'haproxy-server.pem'), both('server.pem', 'server-key.pem'), { mode: 0o600 });
  writeFileSync(join(dir, 'haproxy-proxy.pem'), both('proxy.pem', 'proxy-key.pem'), { mode: 0o600 });
}

/**
 * nginx (1.22 in bookworm). `worker_processes 1`: a master process and one worker (the worker
 * serves; the master only supervises: the bench sums both for CPU and memory). In the
 * foreground (`daemon off`), everything it writes in the run's temp folder.
 */
export function nginx(dir: string, port: number, originPort: number): NativePeer {
  const root = join(dir, 'nginx');
  mkdirSync(root, { recursive: true });
  const isRoot = process.getuid?.() === 0;
  const cfg = `# written by bench/run.ts
${isRoot ? '# workers run as root: the temp folder is private to the bench user\nuser root;\n' : ''}worker_processes 1;
daemon off;
pid ${join(root, 'nginx.pid')};
error_log stderr warn;

events {
  worker_connections 4096;
}

http {
  access_log off;
  client_body_temp_path ${join(root, 'body')};
  proxy_temp_path ${join(root, 'proxy')};
  fastcgi_temp_path ${join(root, 'fastcgi')};
  uwsgi_temp_path ${join(root, 'uwsgi')};
  scgi_temp_path ${join(root, 'scgi')};

  upstream origin {
    server 127.0.0.1:${originPort};
    # keep up to 128 idle connections to the origin (as reply-from's pool), reuse them for any
    # request, and do not retire them after 1000 requests (the default) or 60 s
    keepalive 128;
    keepalive_requests 1000000000;
    keepalive_timeout ${IDLE_S}s;
  }

  server {
    listen 127.0.0.1:${port} ssl;
    # TLS termination; a client certificate chained to the bench CA is required
    ssl_certificate ${join(dir, 'server.pem')};
    ssl_certificate_key ${join(dir, 'server-key.pem')};
    ssl_client_certificate ${join(dir, 'ca.pem')};
    ssl_verify_client on;
    # TLS 1.2 and 1.3 like the other peers (1.22's default still includes 1.0 and 1.1; TLS 1.3 is
    # negotiated either way)
    ssl_protocols TLSv1.2 TLSv1.3;
    # keep client connections open as long as the other peers do; the default closes a
    # keep-alive connection after 1000 requests, which would add handshakes only for nginx
    keepalive_timeout ${IDLE_S}s;
    keepalive_requests 1000000000;

    location / {
      proxy_pass https://origin;
      # HTTP/1.1 with keep-alive to the upstream (nginx's default is HTTP/1.0 and a new
      # connection per request)
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      # TLS to the origin with the proxy's client certificate, the origin's certificate
      # verified against the bench CA for the name localhost, SNI localhost; session reuse
      # toward the origin is nginx's default (proxy_ssl_session_reuse on)
      proxy_ssl_certificate ${join(dir, 'proxy.pem')};
      proxy_ssl_certificate_key ${join(dir, 'proxy-key.pem')};
      proxy_ssl_trusted_certificate ${join(dir, 'ca.pem')};
      proxy_ssl_verify on;
      proxy_ssl_verify_depth 2;
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      # 1.22's default toward upstreams is TLSv1 TLSv1.1 TLSv1.2, without 1.3: every other peer
      # speaks TLS 1.3 to the origin
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      # stream bodies both ways like the other peers: request bodies are not spooled to disk
      # before forwarding (the default buffers the whole 256 MiB upload in a temp file first),
      # no request body size limit (default 1 MiB), and responses are never spooled to disk
      # (proxy_buffering stays on, the default, with its in-memory buffers; nothing goes to
      # a temp file)
      proxy_request_buffering off;
      client_max_body_size 0;
      proxy_max_temp_file_size 0;
    }
  }
}
`;
  const path = join(root, 'nginx.conf');
  writeFileSync(path, cfg);
  return { command: 'nginx', args: ['-p', root, '-c', path] };
}
