#!/bin/bash
# The whole report in one command (repository root; builds release binaries; nginx and varnish
# installed): CPU per hit against nginx and Varnish, hit ratio on the Zipf mix, and a shared
# store's lock cost, into $OUT (default /tmp/cache-report).
set -euo pipefail
OUT="${OUT:-/tmp/cache-report}"
mkdir -p "$OUT"
cargo build --release -p ringgate -p ringbench
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
RATES="${RATES:-5000 20000}" REPS="${REPS:-5}" SECS="${SECS:-5}" OUT="$OUT/cpu" \
  perf-reports/0010-cache/cpu-per-hit.sh
python3 perf-reports/0010-cache/summarize.py "$OUT/cpu/results.csv" | tee "$OUT/cpu-summary.md"
RUNS="${RUNS:-3}" OUT="$OUT/zipf" perf-reports/0010-cache/zipf.sh
cat "$OUT/zipf/results.csv"
cargo run --release -p ringgate-cache --example sharing | tee "$OUT/sharing.log"
