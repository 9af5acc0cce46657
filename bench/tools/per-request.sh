#!/usr/bin/env bash
# Proxy cost per request, for A/B comparisons on a noisy machine where req/s alone misleads.
#   bench/tools/per-request.sh cpu  off|metrics|reqlog|on [connections]   proxy CPU µs per request (/proc)
#   bench/tools/per-request.sh cg   off|metrics|reqlog|on                 instructions per request (callgrind)
# off: no [admin], no [request_log]; metrics: [admin] only; reqlog: [request_log] only; on: both.
# Proxy on core 0, origin and loadgen on core 1. Run several rounds, alternating, and compare
# medians. Extra proxy flags: NODE_FLAGS="--cpu-prof --cpu-prof-dir=/tmp/prof". callgrind mode: the proxy runs ~50x slower, so keep WARMUP long (V8's Maglev JIT was
# still ~27% of the instructions after 8 s) and remember timer-driven work is overweighted.
set -euo pipefail
MODE=${1:?cpu|cg}; VARIANT=${2:?off|metrics|reqlog|on}; CONNS=${3:-50}
WARMUP=${WARMUP:-8}; SECONDS_=${SECONDS_:-5}
. "$(dirname "$0")/common.sh"
bench_setup per-request
PORT=18443
start_origin
rm -f "$DIR"/req.sqlite*
proxy_config "$DIR/p.toml" "$PORT"
{
  case $VARIANT in metrics|on) printf '[admin]\naddress = "127.0.0.1:19901"\n' ;; esac
  case $VARIANT in reqlog|on) printf '[request_log]\npath = "req.sqlite"\n' ;; esac
} >> "$DIR/p.toml"
if [ "$MODE" = cg ]; then
  taskset -c 0 valgrind --tool=callgrind --smc-check=all-non-file --callgrind-out-file="$DIR/cg.out.%p" \
    $N --max-semi-space-size=1 bin/mtls-proxy.js start -c "$DIR/p.toml" > "$DIR/proxy.out" 2>&1 & PROXY_PID=$!
else
  taskset -c 0 $N --max-semi-space-size=1 ${NODE_FLAGS:-} bin/mtls-proxy.js start -c "$DIR/p.toml" > "$DIR/proxy.out" 2>&1 & PROXY_PID=$!
fi
wait_port "$PORT"
LG="taskset -c 1 $N bench/loadgen.ts --dir $DIR --port $PORT --mode small --connections $CONNS --warmup 0"
$LG --seconds "$WARMUP" > /dev/null
if [ "$MODE" = cg ]; then
  callgrind_control -z "$PROXY_PID" > /dev/null
  $LG --seconds "$SECONDS_" > "$DIR/lg.out"
  callgrind_control -d "$PROXY_PID" > /dev/null; sleep 2
  IR=$(grep -m1 '^summary:\|^totals:' "$(ls -t "$DIR"/cg.out.* | head -1)" | awk '{print $2}')
  RPS=$(grep -o '"rps":[0-9.]*' "$DIR/lg.out" | cut -d: -f2)
  python3 -c "r=$RPS*$SECONDS_; print(f'$VARIANT rps={$RPS} instructions_per_request={$IR/r:.0f}')"
else
  PID=$PROXY_PID
  T0=$(awk '{print $14+$15}' /proc/$PID/stat)
  $LG --seconds "$SECONDS_" > "$DIR/lg.out"
  T1=$(awk '{print $14+$15}' /proc/$PID/stat)
  RPS=$(grep -o '"rps":[0-9.]*' "$DIR/lg.out" | cut -d: -f2)
  TCK=$(getconf CLK_TCK)
  python3 -c "print(f'$VARIANT rps={$RPS} cpu_us_per_request={($T1-$T0)*1e6/$TCK/($RPS*$SECONDS_):.1f}')"
fi
kill -INT "$PROXY_PID"
# wait for the drain to finish, so the next run can bind the same ports
for _ in $(seq 300); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
