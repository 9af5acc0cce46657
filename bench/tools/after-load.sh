#!/usr/bin/env bash
# Streaming through one proxy process before and after small-request load, for GC/state effects
# a fresh process hides (bench/run.ts runs the downloads after the small-request scenarios):
#   [MODE=upload] bench/tools/after-load.sh [extra node flags...]   (MODE: download, the default, or upload)
# Runs from dist/ (npm run build first). Proxy on core 0, origin and loadgen on core 1. Prints,
# for 3 transfers of 256 MiB each time: MiB/s, proxy CPU ms per 256 MiB, scavenges and
# mark-compacts (--trace-gc) and the heap after the last GC. Small load: SMALL_CONNS (50) for 8 s.
set -euo pipefail
. "$(dirname "$0")/common.sh"
bench_setup after-load
PORT=18743
start_origin
proxy_config "$DIR/after-load.toml" "$PORT"
MTLS_PROXY_DIST=1 taskset -c 0 $N --max-semi-space-size=1 --trace-gc "$@" bin/mtls-proxy.js start -c "$DIR/after-load.toml" > "$DIR/proxy.out" 2>&1 & PROXY_PID=$!
wait_port "$PORT"
TCK=$(getconf CLK_TCK)
downloads() {
  local s0 m0 t0 t1
  s0=$(grep -c Scavenge "$DIR/proxy.out" || true); m0=$(grep -c Mark-Compact "$DIR/proxy.out" || true)
  t0=$(awk '{print $14+$15}' /proc/$PROXY_PID/stat)
  taskset -c 1 $N bench/loadgen.ts --dir "$DIR" --port "$PORT" --mode "${MODE:-download}" --runs 3 --warmup-runs 1 2>/dev/null | grep -o '"mib_per_s":\[[^]]*\]' | tr '\n' ' '
  t1=$(awk '{print $14+$15}' /proc/$PROXY_PID/stat)
  echo "proxy_cpu_ms_per_256MiB=$(( (t1-t0)*1000/TCK/4 )) scavenges=$(( $(grep -c Scavenge "$DIR/proxy.out")-s0 )) mark_compacts=$(( $(grep -c Mark-Compact "$DIR/proxy.out")-m0 )) heap:$(grep -E 'Scavenge|Mark-Compact' "$DIR/proxy.out" | tail -1 | grep -o '> [0-9.]* ([0-9.]*) MB' | tr -d '>')"
}
echo "fresh:             $(downloads)"
taskset -c 1 $N bench/loadgen.ts --dir "$DIR" --port "$PORT" --mode small --connections "${SMALL_CONNS:-50}" --seconds 8 --warmup 0 2>/dev/null | grep -o '"rps":[0-9.]*' | sed 's/^/small load /'
echo "after small load:  $(downloads)"
echo "again:             $(downloads)"
kill -INT "$PROXY_PID"
for _ in $(seq 300); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
