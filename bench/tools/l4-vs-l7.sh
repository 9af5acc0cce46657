#!/usr/bin/env bash
# 256 MiB transfers through one proxy's L7 (http) listener and another's L4 (tcp) listener,
# alternating: MiB/s, proxy CPU ms per transfer and RSS after it, per transfer.
#   bench/tools/l4-vs-l7.sh [download|upload] [rounds]     (MTLS_PROXY_DIST=1: from dist/)
# Both proxies on core 0 (the one not measured idles), origin and loadgen on core 1, as bulk.sh.
# Through L4 the loadgen's HTTP passes as bytes, so both move the same bytes over the same TLS.
set -euo pipefail
MODE=${1:-download}; ROUNDS=${2:-4}
. "$(dirname "$0")/common.sh"
bench_setup l4
start_origin
proxy_config "$DIR/p7.toml" 18561
proxy_config "$DIR/p4.toml" 18562
sed -i 's/^upstream = "origin"$/upstream = "origin"\nmode = "tcp"/' "$DIR/p4.toml"
taskset -c 0 $N --max-semi-space-size=1 bin/mtls-proxy.js start -c "$DIR/p7.toml" > "$DIR/p7.out" 2>&1 & P7=$!
taskset -c 0 $N --max-semi-space-size=1 bin/mtls-proxy.js start -c "$DIR/p4.toml" > "$DIR/p4.out" 2>&1 & P4=$!
trap 'kill $OPID $P7 $P4 2>/dev/null || true' EXIT
wait_port 18561; wait_port 18562
# one warm-up transfer each, not counted
for p in 18561 18562; do taskset -c 1 $N bench/loadgen.ts --dir "$DIR" --port $p --mode "$MODE" --runs 1 --warmup-runs 0 > /dev/null 2>&1; done
one() {
  local pid=$1 port=$2 name=$3 c0 c1 out
  c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  out=$(taskset -c 1 $N bench/loadgen.ts --dir "$DIR" --port "$port" --mode "$MODE" --runs 1 --warmup-runs 0 2>/dev/null | grep -o '"mib_per_s":\[[^]]*\]' | grep -o '[0-9.]*')
  c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  echo "$name mib_s=$out cpu_ms=$(( (c1-c0)*1000/$(getconf CLK_TCK) )) rss_kib=$(awk '/^VmRSS/{print $2}' "/proc/$pid/status")"
}
for _ in $(seq "$ROUNDS"); do one $P7 18561 L7; one $P4 18562 L4; done
