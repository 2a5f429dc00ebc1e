#!/bin/bash
# CPU time per request of `ringgate proxy` (one worker pinned on CPU 1), binaries A and B taking
# turns under the same open-model load (ringbench and its stub upstream on CPU 0): the proxy
# process's task-clock (perf, a software event) over the requests ringbench counted, at a rate
# the generator holds on this host (and the user/system split from /proc, in clock ticks). A
# direct A/B of two builds, without a peer in between.
# Usage (repository root, release builds): A=bin B=bin ROUNDS=6 RATE=3000 perf-reports/0008-pipeline/ab-cpu.sh
set -euo pipefail
: "${A:?binary A}" "${B:?binary B}"
RATE="${RATE:-3000}"; SECS="${SECS:-6}"; ROUNDS="${ROUNDS:-6}"
RB=./target/release/ringbench
up_port=$((20000 + RANDOM % 20000))
taskset -c 0 "$RB" upstream --listen "127.0.0.1:$up_port" --body-bytes 64 >/dev/null 2>&1 &
up=$!
trap 'kill $up 2>/dev/null || true' EXIT
sleep 0.3
one() {
  local name=$1 bin=$2 out json
  out=$(mktemp); json=$(mktemp)
  taskset -c 1 "$bin" proxy --listen 127.0.0.1:0 --to "127.0.0.1:$up_port" > "$out" 2>&1 &
  local gw=$!
  for _ in $(seq 50); do grep -q "listen=\[" "$out" && break; sleep 0.1; done
  local addr
  addr=$(sed -n 's/.*listen=\[\([^],]*\).*/\1/p' "$out" | head -1)
  local t0
  t0=$(awk '{print $14, $15}' "/proc/$gw/stat")
  perf stat -x, -e task-clock -p "$gw" -o "$out.perf" -- sleep "$((SECS + 2))" &
  local perf_pid=$!
  taskset -c 0 "$RB" run --url "http://$addr/" --rate "$RATE" --duration "${SECS}s" --warmup 1s \
    --conns 16 --json "$json" >/dev/null 2>&1 || true
  wait "$perf_pid"
  local t1
  t1=$(awk '{print $14, $15}' "/proc/$gw/stat")
  kill "$gw"; wait "$gw" 2>/dev/null || true
  python3 - "$name" "$json" "$out.perf" "$t0" "$t1" <<'PY'
import json, os, sys
name, js, perf, t0, t1 = sys.argv[1:6]
tick = os.sysconf("SC_CLK_TCK")
(u0, s0), (u1, s1) = (map(int, t0.split()), map(int, t1.split()))
d = json.load(open(js))
sent = d["counts"]["success"]
ms = next(float(l.split(",")[0]) for l in open(perf) if ",task-clock," in l or l.split(",")[2:3] == ["task-clock"])
per = lambda t: t / tick * 1e6 / max(sent, 1)
print(f"{name} requests={sent} task_clock_ms={ms:.1f} us_per_req={ms * 1000 / max(sent, 1):.2f} "
      f"user_us_per_req={per(u1 - u0):.2f} sys_us_per_req={per(s1 - s0):.2f} verdict={d.get('verdict', '?')}")
PY
  rm -f "$out" "$out.perf" "$json"
}
for r in $(seq "$ROUNDS"); do
  one "A-$r" "$A"
  one "B-$r" "$B"
done
