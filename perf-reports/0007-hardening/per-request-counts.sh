#!/bin/bash
# Kernel work per request of `ringgate proxy` (one worker on CPU 1), counted, not timed: io_uring
# submissions, syscalls and context switches of the proxy process over a fixed number of
# keep-alive requests at a low open-model rate (ringbench and its stub upstream on CPU 0).
# Counts do not depend on how noisy the host is, so binaries can be compared on a shared VM.
# Usage (repository root, release builds): perf-reports/0007-hardening/per-request-counts.sh BIN[:PROFILE]...
# (a PROFILE file is passed as `--profile`: e.g. one with `[io] driver = "epoll"` for the epoll
# reference). Besides submissions, syscalls and context switches it counts poll arms (a receive
# posted before its data, failed once, then armed), io_uring_enter calls and recvfrom calls (the
# pool's MSG_PEEK at checkout).
set -euo pipefail
RATE="${RATE:-2000}"; SECS="${SECS:-5}"
RB=./target/release/ringbench
up_port=$((20000 + RANDOM % 20000))
taskset -c 0 "$RB" upstream --listen "127.0.0.1:$up_port" --body-bytes 64 >/dev/null 2>&1 &
up=$!
trap 'kill $up 2>/dev/null || true' EXIT
sleep 0.3
for arg in "$@"; do
  bin=${arg%%:*}; prof=""
  [ "$arg" != "$bin" ] && prof=${arg#*:}
  out=$(mktemp)
  taskset -c 1 "$bin" proxy --listen 127.0.0.1:0 --to "127.0.0.1:$up_port" ${prof:+--profile "$prof"} > "$out" 2>&1 &
  gw=$!
  for _ in $(seq 50); do grep -q "listen=\[" "$out" && break; sleep 0.1; done
  addr=$(sed -n 's/.*listen=\[\([^],]*\).*/\1/p' "$out" | head -1)
  perf stat -x, -e 'io_uring:io_uring_submit_req,raw_syscalls:sys_enter,context-switches,io_uring:io_uring_poll_arm,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvfrom' \
    -p "$gw" -o "$out.perf" -- sleep "$((SECS + 2))" &
  perf_pid=$!
  json=$(mktemp)
  taskset -c 0 "$RB" run --url "http://$addr/" --rate "$RATE" --duration "${SECS}s" --warmup 1s \
    --conns 16 --json "$json" >/dev/null 2>&1 || true
  wait "$perf_pid"
  kill "$gw"; wait "$gw" 2>/dev/null || true
  reqs=$(python3 -c "import json,sys; d=json.load(open('$json')); print(d['counts']['success'])" 2>/dev/null || echo 0)
  python3 - "$arg" "$reqs" "$out.perf" "$SECS" <<'PY'
import sys
bin, reqs, perf, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
counts = {}
for line in open(perf):
    parts = line.strip().split(",")
    if len(parts) > 2 and parts[0].replace(".", "").isdigit():
        counts[parts[2]] = float(parts[0])
# perf counts the whole attach window, the 1 s warmup included, while ringbench counts only
# the measured window's requests: the warmup's requests (same rate) are added back, so the
# figures are per request sent. (Before 2026-12-07 they were not: the counts of reports 0007 and
# 0008 are over by (SECS + 1) / SECS = 1.2; their before/after comparisons are unaffected.)
sent = round(reqs * (secs + 1.0) / secs)
print(f"{bin}: {sent} requests counted;", ", ".join(
    f"{k} {v / max(sent, 1):.2f}/req" for k, v in counts.items()))
PY
  rm -f "$out" "$out.perf" "$json"
done
