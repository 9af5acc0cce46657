#!/usr/bin/env bash
# Paired A/B of proxy CPU per small request: two proxies run side by side on core 0, each with its
# own loadgen (CONNS connections, default 25) on core 1, over the same window. Both see the same
# machine (steal, frequency, cache, the origin's load), so the ratio of their CPU per request is
# far steadier than comparing runs taken one after the other (per-request.sh): there, the same
# variant ranged 35.7-41.8 µs per request within minutes.
#   bench/tools/ab.sh A B [rounds]        A, B: off | metrics | reqlog | on (as per-request.sh)
#                                         | haproxy (Debian's, configured as npm run bench does)
#                                         | reply-from (bench/peers/reply-from.ts)
# Each round starts both proxies fresh, warms them up (WARMUP s), measures (SECONDS_ s) and swaps
# which variant gets which port and loadgen; it prints B/A per round and the median.
# Extra proxy flags: NODE_FLAGS (both); LOADGEN=wrk: wrk instead of bench/loadgen.ts; LG_FLAGS: more
# loadgen flags (--close: a new TLS connection per request); ROOT_A, ROOT_B: run another checkout's
# proxy on that side (bench/tools/ab-builds.sh); environment for one side: ENV_A, ENV_B ("K=V ..."),
# e.g. ENV_B="UV_THREADPOOL_SIZE=1" bench/tools/ab.sh on on, to A/B a setting within one variant.
# Against HAProxy, where the bench's one-after-the-other runs swing with the machine:
#   LOADGEN=wrk LG_FLAGS=--close bench/tools/ab.sh off haproxy 4     new TLS connections
#   LOADGEN=wrk CONNS=1 bench/tools/ab.sh off haproxy 4              one connection (p50 printed)
set -euo pipefail
A=${1:?off|metrics|reqlog|on}; B=${2:?off|metrics|reqlog|on}; ROUNDS=${3:-5}
CONNS=${CONNS:-25}; WARMUP=${WARMUP:-6}; SECONDS_=${SECONDS_:-6}
. "$(dirname "$0")/common.sh"
bench_setup ab
start_origin
PIDS=()
# HAProxy (the haproxy variant) is stopped by its config file's name: it outlives the pid taken
stop_haproxy() { pkill -TERM -f "haproxy -db -f $DIR/haproxy" 2>/dev/null || true; }
trap 'kill ${OPID:-} ${PIDS[@]:-} 2>/dev/null || true; stop_haproxy' EXIT

# start_variant <variant> <slot> <env> <checkout>: a proxy on port 1844<slot>, admin on 1990<slot>; sets VPID
start_variant() {
  local v=$1 s=$2 port=$((18440 + $2)) e=$3 root=$4
  if [ "$v" = haproxy ]; then
    $N --input-type=module -e "
      const { haproxy, haproxyPems } = await import('$ROOT/bench/peers/native.ts');
      const { readFileSync, renameSync } = await import('node:fs');
      const files = {};
      for (const f of ['server.pem', 'server-key.pem', 'proxy.pem', 'proxy-key.pem']) files[f] = readFileSync('$DIR/' + f, 'utf8');
      haproxyPems('$DIR', files);
      haproxy('$DIR', $port, $OPORT);
      renameSync('$DIR/haproxy.cfg', '$DIR/haproxy$s.cfg');"
    taskset -c 0 haproxy -db -f "$DIR/haproxy$s.cfg" > "$DIR/proxy$s.out" 2>&1 & VPID=$!
    PIDS+=("$VPID")
    return
  fi
  if [ "$v" = reply-from ]; then
    taskset -c 0 $N bench/peers/reply-from.ts --dir "$DIR" --upstream "127.0.0.1:$OPORT" --port "$port" > "$DIR/proxy$s.out" 2>&1 & VPID=$!
    PIDS+=("$VPID")
    return
  fi
  rm -f "$DIR/req$s.sqlite"*
  proxy_config "$DIR/p$s.toml" "$port"
  {
    case $v in metrics|on) printf '[admin]\naddress = "127.0.0.1:%s"\n' $((19900 + s)) ;; esac
    case $v in reqlog|on) printf '[request_log]\npath = "req%s.sqlite"\n' "$s" ;; esac
  } >> "$DIR/p$s.toml"
  # shellcheck disable=SC2086
  env $e taskset -c 0 $N --max-semi-space-size=1 ${NODE_FLAGS:-} "$root/bin/mtls-proxy.js" start -c "$DIR/p$s.toml" > "$DIR/proxy$s.out" 2>&1 & VPID=$!
  PIDS+=("$VPID")
}

cpu_of() { awk '{print $14+$15}' "/proc/$1/stat"; }
# LOADGEN=wrk: wrk (as npm run bench uses it, with the client-certificate shim) instead of
# bench/loadgen.ts. The proxy's own cost per request is lower under wrk, so a fixed cost per
# request (the request log's) is a larger share there.
if [ "${LOADGEN:-node}" = wrk ]; then
  [ -f "$DIR/wrk-shim.so" ] || gcc -O2 -shared -fPIC -o "$DIR/wrk-shim.so" bench/tools/wrk-client-cert.c -ldl -lssl -lcrypto
  printf '%s\n' 'done = function(s, latency, requests)' '  io.write(string.format("{\"rps\":%.1f,\"p50_us\":%d}\n", s.requests / (s.duration / 1e6), latency:percentile(50)))' 'end' > "$DIR/ab.lua"
  WRK_HEADERS=()
  case " ${LG_FLAGS:-} " in *" --close "*) WRK_HEADERS=(-H "Connection: close") ;; esac
  wrk_lg() { # wrk_lg --port P --seconds S
    LD_PRELOAD="$DIR/wrk-shim.so" WRK_CLIENT_CERT="$DIR/client.pem" WRK_CLIENT_KEY="$DIR/client-key.pem" \
      taskset -c 1 wrk -t1 -c"$CONNS" -d"$4"s --timeout 10s "${WRK_HEADERS[@]}" -s "$DIR/ab.lua" "https://localhost:$2/small"
  }
  LG=wrk_lg
else
  LG="taskset -c 1 $N bench/loadgen.ts --dir $DIR --mode small --connections $CONNS --warmup 0 ${LG_FLAGS:-}"
fi
ROOT_A=${ROOT_A:-$ROOT}; ROOT_B=${ROOT_B:-$ROOT}
RATIOS=()
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then V1=$A; V2=$B; E1=${ENV_A:-}; E2=${ENV_B:-}; O1=$ROOT_A; O2=$ROOT_B; else V1=$B; V2=$A; E1=${ENV_B:-}; E2=${ENV_A:-}; O1=$ROOT_B; O2=$ROOT_A; fi
  PIDS=()
  start_variant "$V1" 1 "$E1" "$O1"; P1=$VPID
  start_variant "$V2" 2 "$E2" "$O2"; P2=$VPID
  wait_port 18441; wait_port 18442
  $LG --port 18441 --seconds "$WARMUP" > /dev/null & W1=$!
  $LG --port 18442 --seconds "$WARMUP" > /dev/null & W2=$!
  wait $W1 $W2
  C1=$(cpu_of "$P1"); C2=$(cpu_of "$P2")
  $LG --port 18441 --seconds "$SECONDS_" > "$DIR/lg1.out" & L1=$!
  $LG --port 18442 --seconds "$SECONDS_" > "$DIR/lg2.out" & L2=$!
  wait $L1 $L2
  D1=$(( $(cpu_of "$P1") - C1 )); D2=$(( $(cpu_of "$P2") - C2 ))
  R1=$(grep -o '"rps":[0-9.]*' "$DIR/lg1.out" | cut -d: -f2); R2=$(grep -o '"rps":[0-9.]*' "$DIR/lg2.out" | cut -d: -f2)
  Q1=$(grep -o '"p50_us":[0-9]*' "$DIR/lg1.out" | cut -d: -f2 || true); Q2=$(grep -o '"p50_us":[0-9]*' "$DIR/lg2.out" | cut -d: -f2 || true)
  LINE=$(python3 - "$V1" "$D1" "$R1" "$V2" "$D2" "$R2" $((r % 2)) "$SECONDS_" "$(getconf CLK_TCK)" "${Q1:--}" "${Q2:--}" <<'EOF'
import sys
v1, d1, r1, v2, d2, r2, a_first, secs, tck, q1, q2 = sys.argv[1:]
us = lambda d, r: int(d) * 1e6 / int(tck) / (float(r) * float(secs))
u1, u2 = us(d1, r1), us(d2, r2)
ua, ub = (u1, u2) if a_first == "1" else (u2, u1)
n1, n2 = ("A", "B") if a_first == "1" else ("B", "A")
p50 = lambda q: "" if q == "-" else f" p50 {q} µs"
print(f"{ub / ua:.3f} {n1} {v1}: {float(r1):.0f} req/s {u1:.1f} µs/req{p50(q1)} | {n2} {v2}: {float(r2):.0f} req/s {u2:.1f} µs/req{p50(q2)}")
EOF
)
  echo "round $r: B/A $LINE"
  RATIOS+=("${LINE%% *}")
  kill -INT "$P1" "$P2" 2>/dev/null || true
  stop_haproxy
  for _ in $(seq 300); do kill -0 "$P1" 2>/dev/null || kill -0 "$P2" 2>/dev/null || break; sleep 0.1; done
done
python3 -c "import statistics,sys; r=sorted(map(float,sys.argv[1:])); print(f'$B/$A CPU per request: median {statistics.median(r):.3f} (rounds: {\" \".join(f\"{x:.3f}\" for x in r)})')" "${RATIOS[@]}"
