#!/bin/bash
# CPU per request of plain passthrough before and after the hardening round, each against nginx in
# the same ringbench compare run, the two binaries alternating: BEFORE, AFTER, BEFORE, AFTER...
# Usage (repository root, release builds, nginx installed):
#   BEFORE=/path/to/ringgate-before AFTER=/path/to/ringgate-after ROUNDS=2 OUT=/tmp/cpu-tax \
#     perf-reports/0007-hardening/cpu-tax.sh
# then: python3 perf-reports/0007-hardening/cpu-tax-summarize.py $OUT
set -euo pipefail
: "${BEFORE:?ringgate binary before}" "${AFTER:?ringgate binary after}"
OUT="${OUT:-/tmp/cpu-tax}"
mkdir -p "$OUT"
for round in $(seq 1 "${ROUNDS:-2}"); do
  for side in before after; do
    bin=BEFORE; [ "$side" = after ] && bin=AFTER
    echo "=== round $round $side $(date -u +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)"
    ./target/release/ringbench compare --name "$side-$round" --out "$OUT" \
      --targets ringgate,nginx --rates 5000,20000 --reps 2 --duration 5s --warmup 1s \
      --generator-cpus 0 --upstream-cpus 0 --target-cpus 1 --ringgate "${!bin}" \
      > "$OUT/$side-$round.log" 2>&1 || echo "(compare exited $?: see $OUT/$side-$round.log)"
  done
done
