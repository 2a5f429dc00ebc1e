#!/bin/bash
# Reproduces perf-reports/0011-tax-table on this repository's 2-core machine (repository root).
# Placement (ringbench's defaults): the generator and the stub upstreams on CPU 0, the gateway
# under test (ringgate, nginx, HAProxy) pinned on CPU 1.
set -euo pipefail
OUT=perf-reports/0011-tax-table
cargo build --release -p ringbench -p ringgate
# The allocation-counting build, beside the normal one (only the binary crate differs).
mkdir -p target/alloc
[ -d target/alloc/release ] || cp -al target/release target/alloc/release
cargo build --release -p ringgate --features count-alloc --target-dir target/alloc
RB=target/release/ringbench
RG=target/release/ringgate

# 1. The tax table: every rung, ringgate then the peers that have the rung's features,
#    3 interleaved repetitions, plus a short allocation-counting pass per gateway rung.
"$RB" tax --name ladder --out "$OUT" --ringgate "$RG" \
  --alloc-ringgate target/alloc/release/ringgate --peers nginx,haproxy \
  --rate 1000 --reps 3 --duration 15s --warmup 3s

# 2. The full chain's ceiling (api-group added p99 under 2 ms, no failures, valid runs), a
#    profile at it, and a 10-minute soak at 80% of it.
"$RB" tax --mode ceiling,profile,soak --name modes --out "$OUT" --ringgate "$RG" \
  --duration 15s --warmup 3s --start-rate 500 --max-rate 64000 --bisect 3 --soak-duration 10m

# 3. A rolling restart of two gateway processes under the scenario.
"$RB" tax --mode rolling --name rolling --out "$OUT" --ringgate "$RG" \
  --rate 1000 --duration 30s --warmup 3s

# The throwaway TLS key and the (by now expired) tokens stay out of the repository.
rm -rf "$OUT"/*/tls "$OUT"/*/tokens
