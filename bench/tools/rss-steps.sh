#!/usr/bin/env bash
# Where a fresh proxy's RSS goes, transfer by transfer:
#   [MTLS_PROXY_DIST=1] bench/tools/rss-steps.sh [download|upload] [transfers]
# Starts one proxy (core 0; origin and loadgen on core 1), then after the start and after each
# 256 MiB transfer prints its RSS, its peak during that transfer (VmHWM reset with clear_refs 5
# before it), and RSS split by mapping: the node binary's pages (file-backed, shared), malloc's
# main heap ([heap]), anonymous memory (V8's heap, malloc's per-thread arenas, large malloc
# blocks), shared libraries; the V8 heap after the last GC (--trace-gc); anonymous mappings over
# 2 MiB (RSS, size in KiB). Then 5 s idle, and, when gdb is installed, once more after
# malloc_trim(0) in the proxy: what that gives back was free memory malloc kept.
# NODE_FLAGS: more node flags (e.g. --liftoff-only); PROXY_ENV: "K=V ..." for the proxy
# (e.g. MALLOC_TRIM_THRESHOLD_=131072).
set -euo pipefail
MODE=${1:-download}; RUNS=${2:-4}
. "$(dirname "$0")/common.sh"
bench_setup rss-steps
PORT=18546
start_origin
proxy_config "$DIR/p.toml" "$PORT"
# shellcheck disable=SC2086
env ${PROXY_ENV:-} taskset -c 0 $N --max-semi-space-size=1 --trace-gc ${NODE_FLAGS:-} bin/mtls-proxy.js start -c "$DIR/p.toml" > "$DIR/proxy.out" 2>&1 & PROXY_PID=$!
wait_port "$PORT"
sleep 0.5
report() {
  python3 - "$PROXY_PID" "$1" "$DIR/proxy.out" <<'PY'
import collections, re, sys
pid, label, gc_log = sys.argv[1:]
kib = collections.Counter()
big = []
kind = None
for line in open(f'/proc/{pid}/smaps'):
    if re.match(r'^[0-9a-f]+-[0-9a-f]+ ', line):
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split('-'))
        name = fields[5] if len(fields) > 5 else ''
        kind = ('[heap]' if name == '[heap]' else 'node' if name.endswith('/node')
                else 'anon' if name == '' else 'lib' if '.so' in name else 'other')
        size = (hi - lo) // 1024
    elif line.startswith('Rss:'):
        n = int(line.split()[1])
        kib[kind] += n
        if kind == 'anon' and n > 2048:
            big.append((n, size))
status = open(f'/proc/{pid}/status').read()
rss = int(re.search(r'VmRSS:\s+(\d+)', status).group(1))
hwm = int(re.search(r'VmHWM:\s+(\d+)', status).group(1))
gcs = [l for l in open(gc_log) if 'Scavenge' in l or 'Mark-Compact' in l]
m = re.search(r'-> ([\d.]+) \(([\d.]+)\) MB', gcs[-1]) if gcs else None
v8 = f'{m.group(1)} used, {m.group(2)} committed' if m else 'no GC yet'
mib = lambda k: f'{k / 1024:5.1f}'
print(f"{label:12} RSS {mib(rss)} peak {mib(hwm)} | node {mib(kib['node'])} [heap] {mib(kib['[heap]'])} "
      f"anon {mib(kib['anon'])} libs {mib(kib['lib'])} (MiB) | V8 heap {v8} MB | anon > 2 MiB: {sorted(big, reverse=True)[:4]}")
PY
}
report start
for i in $(seq "$RUNS"); do
  echo 5 > "/proc/$PROXY_PID/clear_refs"
  taskset -c 1 $N bench/loadgen.ts --dir "$DIR" --port "$PORT" --mode "$MODE" --runs 1 --warmup-runs 0 > /dev/null
  report "$MODE $i"
done
sleep 5
report "idle 5 s"
if command -v gdb > /dev/null; then
  gdb -p "$PROXY_PID" -batch -ex 'call (int)malloc_trim(0)' > /dev/null 2>&1 || true
  report "malloc_trim"
fi
kill -INT "$PROXY_PID"
for _ in $(seq 300); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
