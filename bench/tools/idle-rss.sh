#!/usr/bin/env bash
# Idle RSS of the built proxy as the bench measures it (500 ms after its port opens), split by
# mapping: the node binary's resident pages, anonymous memory (V8's heap), malloc's [heap], shared
# libraries. RUNS starts (default 3); NODE_FLAGS adds node flags (e.g. --trace-opt, --no-maglev
# to see what V8's optimizing compilers page in). Runs dist/ (npm run build first).
set -euo pipefail
. "$(dirname "$0")/common.sh"
bench_setup idle
start_origin
proxy_config "$DIR/p.toml" 18443
for _ in $(seq "${RUNS:-3}"); do
  # shellcheck disable=SC2086
  MTLS_PROXY_DIST=1 taskset -c 0 $N --max-semi-space-size=1 ${NODE_FLAGS:-} bin/mtls-proxy.js start -c "$DIR/p.toml" > "$DIR/proxy.out" 2>&1 & PROXY_PID=$!
  wait_port 18443
  sleep 0.5
  python3 - "$PROXY_PID" <<'PY'
import collections, re, sys
kinds = collections.Counter()
cur = None
for line in open(f'/proc/{sys.argv[1]}/smaps'):
    m = re.match(r'^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$', line)
    if m:
        name = m.group(1) or '[anon]'
        cur = 'node binary' if name.endswith('/node') else 'shared libs' if '.so' in name else name
    elif line.startswith('Rss:'):
        kinds[cur] += int(line.split()[1])
print(f'idle RSS {sum(kinds.values()) / 1024:.1f} MiB:', ', '.join(f'{k} {v / 1024:.1f}' for k, v in kinds.most_common(5)))
PY
  kill "$PROXY_PID"; wait "$PROXY_PID" 2>/dev/null || true
done
