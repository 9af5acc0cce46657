#!/usr/bin/env bash
# bulk.sh for two builds, alternating: A and B are checkouts (their bin/mtls-proxy.js, dist/
# with MTLS_PROXY_DIST=1), e.g. bench/tools/bulk-builds.sh /tmp/base . download 4 3
# (4 transfers per run, 3 pairs, the order swapped every pair). Prints each run's bulk.sh line,
# then per build the median proxy CPU ms per 256 MiB and median MiB/s over every transfer, and
# B / A of both. CPU per 256 MiB is the steadier figure on a noisy machine: MiB/s depends on the
# other core too.
set -euo pipefail
A=$(cd "${1:?checkout A}" && pwd); B=$(cd "${2:?checkout B}" && pwd)
MODE=${3:-download}; RUNS=${4:-4}; PAIRS=${5:-3}
OUT=$(mktemp -d /tmp/bulk-builds-XXXX)
for p in $(seq "$PAIRS"); do
  if [ $((p % 2)) = 1 ]; then order="A B"; else order="B A"; fi
  for w in $order; do
    if [ "$w" = A ]; then dir=$A; else dir=$B; fi
    line=$("$dir/bench/tools/bulk.sh" "$MODE" "$RUNS" 2>/dev/null | grep mib_per_s)
    echo "$w $line" | tee -a "$OUT/$w"
  done
done
python3 - "$OUT" <<'PY'
import re, sys, statistics as st
out = sys.argv[1]; res = {}
for w in 'AB':
    cpu, mib = [], []
    for line in open(f'{out}/{w}'):
        cpu.append(int(re.search(r'proxy_cpu_ms_per_256MiB=(\d+)', line).group(1)))
        mib += [float(x) for x in re.search(r'\[([^]]*)\]', line).group(1).split(',')]
    res[w] = (st.median(cpu), st.median(mib))
    print(f'{w}: proxy CPU ms per 256 MiB median {res[w][0]} (runs {cpu}); MiB/s median {res[w][1]}')
print(f'B / A: CPU {res["B"][0] / res["A"][0]:.3f}, MiB/s {res["B"][1] / res["A"][1]:.3f}')
PY
