#!/bin/bash
# CPU per cache hit: ringgate (a cache zone), nginx (proxy_cache) and Varnish (malloc storage),
# each pinned on CPU 1, serving the same 1 KiB object from cache; the origin (ringbench upstream)
# and the open-model generator (ringbench run, 16 keep-alive connections) on CPU 0. Targets take
# turns (ringgate, nginx, varnish, ringgate, ...) at each rate. CPU is the target's processes'
# user+system time from /proc over the measured run, per request ringbench counted.
# Usage (repository root, release builds of ringgate and ringbench, nginx and varnish installed):
#   RATES="5000 20000" REPS=5 OUT=/tmp/cache-cpu perf-reports/0010-cache/cpu-per-hit.sh
# then: python3 perf-reports/0010-cache/summarize.py $OUT/results.csv
set -euo pipefail
RATES="${RATES:-5000 20000}"; REPS="${REPS:-5}"; SECS="${SECS:-5}"; OUT="${OUT:-/tmp/cache-cpu}"
RG=${RINGGATE:-./target/release/ringgate}; RB=./target/release/ringbench
mkdir -p "$OUT"; W=$(mktemp -d)
up=$((21000 + RANDOM % 10000)); port=$((up + 1))
taskset -c 0 "$RB" upstream --listen "127.0.0.1:$up" --body-bytes 1024 >/dev/null 2>&1 &
origin=$!
pids=()
cleanup() { kill "$origin" "${pids[@]}" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
cat > "$W/rg.toml" <<TOML
version = "cache-bench"
[[listeners]]
address = "127.0.0.1:$port"
[observability]
metrics = true
request_ids = false
[[cache_zones]]
name = "z"
max_bytes = 67108864
[[upstreams]]
name = "o"
endpoints = ["127.0.0.1:$up"]
[[routes]]
id = "all"
path = { prefix = "/" }
upstream = "o"
cache = { zone = "z", default_ttl = "600s" }
TOML
printf '[workers]\ncpus = [1]\npin = true\n' > "$W/profile.toml"
cat > "$W/nginx.conf" <<NGX
user root;
worker_processes 1;
worker_cpu_affinity 10;
daemon off;
pid $W/nginx.pid;
error_log $W/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  proxy_cache_path $W/nginx-cache keys_zone=z:10m max_size=64m inactive=60m use_temp_path=off;
  upstream o { server 127.0.0.1:$up; keepalive 64; }
  server {
    listen 127.0.0.1:$port reuseport;
    location / {
      proxy_pass http://o;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache z;
      proxy_cache_valid 200 10m;
      add_header X-Cache-Status \$upstream_cache_status;
    }
  }
}
NGX
start() {
  case $1 in
    ringgate) taskset -c 1 "$RG" serve --config "$W/rg.toml" --profile "$W/profile.toml" >"$W/t.log" 2>&1 & ;;
    nginx) taskset -c 1 nginx -c "$W/nginx.conf" >"$W/t.log" 2>&1 & ;;
    varnish) taskset -c 1 varnishd -F -a "127.0.0.1:$port" -b "127.0.0.1:$up" -s malloc,64m \
               -t 600 -n "$W/varnish" -p thread_pools=1 >"$W/t.log" 2>&1 & ;;
  esac
  pids=($!)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/obj" && break; sleep 0.1; done
}
# Every process of the target (nginx's master and worker, varnish's manager and child).
tree() { local p=$1; echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; }
cpu_ticks() { local t=0; for p in $(tree "${pids[0]}"); do
  t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
stop() { for p in $(tree "${pids[0]}" | sort -r); do kill "$p" 2>/dev/null || true; done
  wait "${pids[0]}" 2>/dev/null || true; sleep 0.5; }
echo "target,rate,rep,requests,cpu_us_per_req,p50_us,p99_us,verdict,hit_check" > "$OUT/results.csv"
for rate in $RATES; do
  for rep in $(seq "$REPS"); do
    for t in ${TARGETS:-ringgate nginx varnish}; do
      start "$t"
      for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$port/obj"; done
      check=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/obj" | tr -d '\r' |
        grep -iE '^(cache-status|x-cache-status|age|x-varnish):' | tr '\n' ' ' || true)
      c0=$(cpu_ticks)
      taskset -c 0 "$RB" run --url "http://127.0.0.1:$port/obj" --rate "$rate" --duration "${SECS}s" \
        --warmup 1s --conns 16 --json "$W/run.json" >/dev/null 2>&1 || true
      c1=$(cpu_ticks)
      python3 - "$t" "$rate" "$rep" "$c0" "$c1" "$W/run.json" "$check" "$SECS" >> "$OUT/results.csv" <<'PY'
import json, os, sys
t, rate, rep, c0, c1, js, check, secs = sys.argv[1:9]
tick = os.sysconf("SC_CLK_TCK")
d = json.load(open(js))
n = d["counts"]["success"]
lat = d["latency"]["response"]
p50 = round(lat["p50_ns"] / 1000, 1); p99 = round(lat["p99_ns"] / 1000, 1)
# The CPU window covers warmup and measured run: scale the requests to the same window.
total = n * (float(secs) + 1.0) / float(secs)
print(f"{t},{rate},{rep},{n},{(int(c1) - int(c0)) / tick * 1e6 / max(total, 1):.2f},{p50},{p99},{d.get('verdict', '?')},{check.strip()}")
PY
      tail -1 "$OUT/results.csv"
      stop
    done
  done
done
