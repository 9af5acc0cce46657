# Shared by the A/B tools (bulk.sh, per-request.sh, after-load.sh); sourced, not run.
# bench_setup <name>: ROOT, N (the pinned node), DIR (BENCH_DIR or a new temp dir) with a test PKI,
#   and an EXIT trap that stops the origin and PROXY_PID.
# start_origin: the mTLS origin on core 1; sets OPORT.
# proxy_config <file> <port>: the proxy's listener (client certificates required) and upstream,
#   log level warn, no admin, no request log; append sections after it.
# wait_port <port>: until something accepts TCP connections there (up to 2 min).
bench_setup() {
  ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd); cd "$ROOT"
  N=node_modules/.bin/node
  DIR=${BENCH_DIR:-$(mktemp -d "/tmp/mtls-$1-XXXX")}
  [ -f "$DIR/ca.pem" ] || $N bench/tools/setup-pki.ts "$DIR"
  trap 'kill ${OPID:-} ${PROXY_PID:-} 2>/dev/null || true' EXIT
}

start_origin() {
  taskset -c 1 $N bench/origin.ts --dir "$DIR" --port 0 > "$DIR/origin.out" 2>&1 & OPID=$!
  for _ in $(seq 50); do grep -q listening "$DIR/origin.out" 2>/dev/null && break; sleep 0.1; done
  OPORT=$(grep -o '"listening":[0-9]*' "$DIR/origin.out" | cut -d: -f2)
}

proxy_config() {
  {
    printf '[log]\nlevel = "warn"\n[listeners.edge]\naddress = "127.0.0.1:%s"\nupstream = "origin"\n' "$2"
    printf '  [listeners.edge.tls]\n  cert = "server.pem"\n  key = "server-key.pem"\n  client_ca = "ca.pem"\n  client_auth = "require"\n'
    printf '[upstreams.origin]\nendpoints = ["127.0.0.1:%s"]\n  [upstreams.origin.tls]\n  cert = "proxy.pem"\n  key = "proxy-key.pem"\n  ca = "ca.pem"\n  server_name = "localhost"\n' "$OPORT"
  } > "$1"
}

wait_port() {
  for _ in $(seq 600); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done
  return 1
}
