#!/usr/bin/env bash
# JS-heap bytes allocated per proxied small request, and GCs per 100k requests: deterministic
# where req/s and CPU time are not (allocation per request hardly depends on the machine's speed).
#   bench/tools/alloc.sh [connections] [rounds]
# Proxy as in per-request.sh "off" (no admin, no request log, log level warn) on core 0 with
# --max-semi-space-size=1, origin and loadgen on core 1. After WARMUP s of load, each round is
# one loadgen run of SECONDS_ s; SIGUSR2 to the proxy opens and closes the window at the
# loadgen's own begin/end marks (bench/tools/alloc-probe.mjs counts). MTLS_PROXY_DIST=1 runs
# dist/ (npm run build first); PROXY_ROOT=<checkout> runs another checkout's proxy (an A/B of
# two builds against the same origin). ALLOC_PROBE_SAMPLE=<bytes>: a sampling heap profile of
# the last round too, objects collected by GC included ($DIR/alloc.heapprofile; summarise with
# bench/tools/heap-summary.ts).
set -euo pipefail
CONNS=${1:-50}; ROUNDS=${2:-3}
WARMUP=${WARMUP:-8}; SECONDS_=${SECONDS_:-5}
. "$(dirname "$0")/common.sh"
bench_setup alloc
PROBE=$ROOT/bench/tools/alloc-probe.mjs
PROXY_ROOT=${PROXY_ROOT:-$ROOT}
PORT=${PORT:-18453}
start_origin
proxy_config "$DIR/p.toml" "$PORT"
ALLOC_PROBE_OUT="$DIR/alloc.json" taskset -c 0 $N --max-semi-space-size=1 --import "$PROBE" ${NODE_FLAGS:-} \
  "$PROXY_ROOT/bin/mtls-proxy.js" start -c "$DIR/p.toml" > "$DIR/proxy.out" 2>&1 & PROXY_PID=$!
wait_port "$PORT"
LG="taskset -c 1 $N bench/loadgen.ts --dir $DIR --port $PORT --mode small --connections $CONNS"
$LG --warmup 0 --seconds "$WARMUP" > /dev/null
for r in $(seq "$ROUNDS"); do
  rm -f "$DIR/alloc.json"
  $LG --warmup 1 --seconds "$SECONDS_" 2> >(while read -r l; do case $l in *'"mark"'*) kill -USR2 "$PROXY_PID" ;; esac; done) > "$DIR/lg.out"
  for _ in $(seq 100); do [ -s "$DIR/alloc.json" ] && break; sleep 0.1; done
  python3 - "$DIR/alloc.json" "$DIR/lg.out" "$r" <<'EOF'
import json, sys
a = json.load(open(sys.argv[1])); lg = json.load(open(sys.argv[2]))
n = lg["requests"]
gcs = " ".join(f"{k}={v * 1e5 / n:.1f}" for k, v in sorted(a["gcs"].items()))
print(f"round {sys.argv[3]}: {lg['rps']} req/s, {n} requests, {a['allocated'] / n:.0f} bytes/request, per 100k requests: {gcs}, errors={lg['errors']}")
EOF
done
kill -INT "$PROXY_PID"
for _ in $(seq 300); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
