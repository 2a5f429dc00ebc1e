#!/bin/bash
# Hit ratio and upstream offload of ringgate's cache on a Zipf key mix, per-core stores (the
# design kept) against one store holding the whole budget (what a store shared by the cores
# would hold: no object twice). 20,000 keys of 1 KiB, Zipf exponent 1.0, a zone of 4 MiB (room
# for about a seventh of the keys), 3,000 req/s open model on 64 keep-alive connections. The same
# seeded key sequence for every run. Hits and misses come from the gateway's own metrics over
# the measured window (after a warmup that fills the cache).
# Usage (repository root, release builds): RUNS=3 OUT=/tmp/cache-zipf perf-reports/0010-cache/zipf.sh
set -euo pipefail
RUNS="${RUNS:-3}"; OUT="${OUT:-/tmp/cache-zipf}"; SECS="${SECS:-20}"; WARM="${WARM:-10}"
RG=./target/release/ringgate; RB=./target/release/ringbench
mkdir -p "$OUT"; W=$(mktemp -d)
python3 - "$W/ids.txt" <<'PY'
import random, sys, bisect, itertools
n, s, samples = 20000, 1.0, 400000
w = [1 / (k ** s) for k in range(1, n + 1)]
cum = list(itertools.accumulate(w))
rng = random.Random(42)
with open(sys.argv[1], "w") as f:
    for _ in range(samples):
        f.write(f"{bisect.bisect_left(cum, rng.random() * cum[-1]) + 1}\n")
PY
printf '[[requests]]\nname = "object"\nweight = 1\nmethod = "GET"\npath = "/k/${ids}"\n[pools]\nids = { file = "%s" }\n' "$W/ids.txt" > "$W/mix.toml"
up=$((21000 + RANDOM % 10000)); port=$((up + 1)); admin=$((up + 2))
taskset -c 0 "$RB" upstream --listen "127.0.0.1:$up" --body-bytes 1024 >/dev/null 2>&1 &
origin=$!
gw=""
trap 'kill $origin $gw 2>/dev/null || true; rm -rf "$W"' EXIT
cat > "$W/rg.toml" <<TOML
version = "zipf"
[[listeners]]
address = "127.0.0.1:$port"
[admin]
address = "127.0.0.1:$admin"
[observability]
request_ids = false
[[cache_zones]]
name = "z"
max_bytes = 4194304
[[upstreams]]
name = "o"
endpoints = ["127.0.0.1:$up"]
[[routes]]
id = "all"
path = { prefix = "/" }
upstream = "o"
cache = { zone = "z", default_ttl = "600s" }
TOML
count() { curl -s "http://127.0.0.1:$admin/metrics" | python3 -c '
import sys
c = {}
for l in sys.stdin:
    if l.startswith("ringgate_cache_requests_total{"):
        o = l.split("outcome=\"")[1].split("\"")[0]
        c[o] = float(l.rsplit(" ", 1)[1])
print(int(c.get("hit", 0) + c.get("collapsed", 0)), int(c.get("miss", 0) + c.get("uncacheable", 0)))'; }
echo "layout,run,requests,hits,misses,hit_ratio" > "$OUT/results.csv"
for run in $(seq "$RUNS"); do
  for layout in per-core-2 one-store-1; do
    if [ "$layout" = per-core-2 ]; then printf '[workers]\ncount = 2\npin = true\n' > "$W/p.toml"
    else printf '[workers]\ncpus = [1]\npin = true\n' > "$W/p.toml"; fi
    "$RG" serve --config "$W/rg.toml" --profile "$W/p.toml" > "$W/gw.log" 2>&1 &
    gw=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/k/1" && break; sleep 0.1; done
    taskset -c 0 "$RB" run --url "http://127.0.0.1:$port/" --scenario "$W/mix.toml" --rate 3000 \
      --duration "${WARM}s" --warmup 0s --conns 64 --json "$W/w.json" >/dev/null 2>&1 || true
    sleep 1.2
    read -r h0 m0 < <(count)
    taskset -c 0 "$RB" run --url "http://127.0.0.1:$port/" --scenario "$W/mix.toml" --rate 3000 \
      --duration "${SECS}s" --warmup 0s --conns 64 --json "$W/r.json" >/dev/null 2>&1 || true
    sleep 1.2
    read -r h1 m1 < <(count)
    python3 - "$layout" "$run" "$((h1 - h0))" "$((m1 - m0))" >> "$OUT/results.csv" <<'PY'
import sys
layout, run, h, m = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
print(f"{layout},{run},{h + m},{h},{m},{h / max(h + m, 1):.4f}")
PY
    tail -1 "$OUT/results.csv"
    kill "$gw"; wait "$gw" 2>/dev/null || true; gw=""
  done
done
