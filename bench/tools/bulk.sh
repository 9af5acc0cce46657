#!/usr/bin/env bash
# Bulk transfer through the proxy, for A/B comparisons of the streaming path:
#   bench/tools/bulk.sh download|upload [runs] [extra node flags...]
# Proxy on core 0, origin and loadgen on core 1, request log and admin off. Prints each run's
# MiB/s, the proxy's CPU milliseconds per 256 MiB, its GC counts (from --trace-gc), its RSS at
# start, its peak RSS up to the end of the warm-up transfer, and how far the counted transfers
# raised RSS above what it was after the warm-up (VmHWM reset, clear_refs 5).
# Direct (no proxy) for the same machine state: DIRECT=1 bench/tools/bulk.sh download
set -euo pipefail
MODE=${1:?download|upload}; RUNS=${2:-4}; shift; shift || true
. "$(dirname "$0")/common.sh"
bench_setup bulk
PORT=18543
start_origin
if [ "${DIRECT:-0}" = 1 ]; then
  taskset -c 1 $N bench/loadgen.ts --dir "$DIR" --port "$OPORT" --mode "$MODE" --runs "$RUNS" 2>/dev/null | grep -o "\"mib_per_s\":\[[^]]*\]"
  exit 0
fi
proxy_config "$DIR/p.toml" "$PORT"
taskset -c 0 $N --max-semi-space-size=1 --trace-gc "$@" bin/mtls-proxy.js start -c "$DIR/p.toml" > "$DIR/proxy.out" 2>&1 & PROXY_PID=$!
wait_port "$PORT"
RSS0=$(awk '/^VmRSS/{print $2}' /proc/$PROXY_PID/status)
# one warm-up transfer, not counted
taskset -c 1 $N bench/loadgen.ts --dir "$DIR" --port "$PORT" --mode "$MODE" --runs 1 --warmup-runs 0 > /dev/null
# peak RSS over the counted transfers: VmHWM reset to the current RSS (proc(5), clear_refs 5)
RSS1=$(awk '/^VmRSS/{print $2}' /proc/$PROXY_PID/status)
HWM0=$(awk '/^VmHWM/{print $2}' /proc/$PROXY_PID/status)
echo 5 > /proc/$PROXY_PID/clear_refs
G0=$(grep -c 'Mark-Compact' "$DIR/proxy.out" || true); S0=$(grep -c 'Scavenge' "$DIR/proxy.out" || true)
T0=$(awk '{print $14+$15}' /proc/$PROXY_PID/stat)
taskset -c 1 $N bench/loadgen.ts --dir "$DIR" --port "$PORT" --mode "$MODE" --runs "$RUNS" --warmup-runs 0 > "$DIR/lg.out"
T1=$(awk '{print $14+$15}' /proc/$PROXY_PID/stat)
G1=$(grep -c 'Mark-Compact' "$DIR/proxy.out" || true); S1=$(grep -c 'Scavenge' "$DIR/proxy.out" || true)
TCK=$(getconf CLK_TCK)
HWM=$(awk '/^VmHWM/{print $2}' /proc/$PROXY_PID/status)
ERRORS=$(grep -o '"errors":[0-9]*' "$DIR/lg.out" | head -1 | cut -d: -f2)
echo "$(grep -o "\"mib_per_s\":\[[^]]*\]" "$DIR/lg.out") proxy_cpu_ms_per_256MiB=$(( (T1-T0)*1000/TCK/RUNS )) mark_compacts=$((G1-G0)) scavenges=$((S1-S0)) rss_start_kib=$RSS0 peak_rss_warmup_kib=$HWM0 growth_after_warmup_kib=$((HWM-RSS1)) errors=${ERRORS:-?}"
kill -INT "$PROXY_PID"
for _ in $(seq 300); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
