#!/bin/bash
# A 7 s CPU profile (perf cpu-clock, 4,999 Hz) of `ringgate proxy` on CPU 1 under 3,000 req/s
# from ringbench (generator and stub upstream on CPU 0), to compare where two builds spend user time.
set -e
# Usage (repository root, release builds): perf-reports/0008-pipeline/profile-user.sh BIN OUT.perf
# then: perf report -i OUT.perf --no-children --sort symbol --stdio
bin=$1; outp=$2
RB=./target/release/ringbench
up_port=$((20000 + RANDOM % 20000))
taskset -c 0 $RB upstream --listen 127.0.0.1:$up_port --body-bytes 64 >/dev/null 2>&1 & up=$!
sleep 0.3
out=$(mktemp)
taskset -c 1 $bin proxy --listen 127.0.0.1:0 --to 127.0.0.1:$up_port > $out 2>&1 & gw=$!
for _ in $(seq 50); do grep -q "listen=\[" $out && break; sleep 0.1; done
addr=$(sed -n 's/.*listen=\[\([^],]*\).*/\1/p' "$out" | head -1)
perf record -e cpu-clock -F 4999 -p $gw -o $outp -- sleep 7 >/dev/null 2>&1 &
pp=$!
taskset -c 0 $RB run --url "http://$addr/" --rate 3000 --duration 6s --warmup 0s --conns 16 >/dev/null 2>&1 || true
wait $pp
kill $gw $up; wait $gw 2>/dev/null || true
