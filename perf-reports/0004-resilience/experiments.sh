#!/usr/bin/env bash
# Report 0004's two experiments, each run against a protected and an unprotected config:
#  1. containment: a bad upstream (200 ms, 30% 503) loaded at 1000 req/s beside a good route at
#     2000 req/s; what the good route sees, how many connections the bad upstream gets, when the
#     breaker opens;
#  2. retry storm: a total outage (every endpoint answers 503) at 1000 req/s with 3 retries on
#     503, none vs unbudgeted vs under a 20% retry budget (no per-second floor, so the bound is
#     exactly 1 + 0.2); upstream requests per client request.
# Proxy pinned on CPU 1, load generator and stub upstreams on CPU 0. Needs release builds.
# usage: perf-reports/0004-resilience/experiments.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-perf-reports/0004-resilience}
rg=target/release/ringgate; rb=target/release/ringbench
mkdir -p "$out/experiments"
x="$out/experiments"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
printf '[workers]\ncpus = [1]\n' > "$x/profile.toml"

start_stub() { # name port args...
  local name=$1 p=$2; shift 2
  taskset -c 0 $rb upstream --listen "127.0.0.1:$p" --name "$name" "$@" > "$x/stub-$name.log" 2>&1 &
  pids+=($!)
}
start_gw() { # config -> sets GW_PID
  taskset -c 1 $rg serve --config "$1" --profile "$x/profile.toml" > "$1.log" 2>&1 &
  GW_PID=$!; pids+=($GW_PID)
  for _ in $(seq 100); do grep -q "admin API" "$1.log" 2>/dev/null && break; sleep 0.05; done
  sleep 0.3
}
stop_gw() { kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; }
metrics() { curl -fs "http://127.0.0.1:$1/metrics"; }

# ---- 1. containment -------------------------------------------------------------------------
good=$(port); bad=$(port)
start_stub good "$good"
start_stub bad "$bad" --latency fixed:200ms --errors 503=0.3
for variant in unprotected protected; do
  lp=$(port); ap=$(port)
  protect=""
  if [ $variant = protected ]; then
    protect='max_requests = 32
max_connections = 32
[upstreams.circuit_breaker]
error_ratio = 0.1
min_requests = 10
window = "2s"
open_for = "1s"'
  fi
  cat > "$x/containment-$variant.toml" <<EOF
version = "containment-$variant"
[[listeners]]
address = "127.0.0.1:$lp"
[admin]
address = "127.0.0.1:$ap"
[[upstreams]]
name = "good"
endpoints = ["127.0.0.1:$good"]
[[upstreams]]
name = "bad"
endpoints = ["127.0.0.1:$bad"]
$protect
[[routes]]
id = "good"
path = { prefix = "/good" }
upstream = "good"
[[routes]]
id = "bad"
path = { prefix = "/bad" }
upstream = "bad"
EOF
  start_gw "$x/containment-$variant.toml"
  # Good route alone, then with the bad route loaded beside it.
  $rb run --url "http://127.0.0.1:$lp/good" --rate 2000 --duration 10s --warmup 1s --cpus 0 \
    --json "$x/containment-$variant-good-alone.json" > /dev/null 2>&1 || true
  $rb run --url "http://127.0.0.1:$lp/bad" --rate 1000 --duration 12s --warmup 0s --cpus 0 --max-conns 4096 \
    --json "$x/containment-$variant-bad.json" > /dev/null 2>&1 &
  badload=$!
  sleep 1
  $rb run --url "http://127.0.0.1:$lp/good" --rate 2000 --duration 10s --warmup 0s --cpus 0 \
    --json "$x/containment-$variant-good-beside-bad.json" > /dev/null 2>&1 || true
  wait $badload || true
  metrics "$ap" > "$x/containment-$variant.metrics"
  stop_gw
done

# ---- 2. retry storm -------------------------------------------------------------------------
p1=$(port); p2=$(port); p3=$(port); p4=$(port)
taskset -c 0 $rb upstream --listen "127.0.0.1:$p1,127.0.0.1:$p2,127.0.0.1:$p3,127.0.0.1:$p4" \
  --name outage --errors 503=1.0 > "$x/stub-outage.log" 2>&1 &
pids+=($!)
for variant in no-retries unbudgeted budgeted; do
  lp=$(port); ap=$(port)
  case $variant in
    no-retries) retry="" ;;
    unbudgeted) retry='[routes.retry]
attempts = 3
on = ["503"]
backoff = "1ms"
max_backoff = "5ms"
budget_ratio = 10.0' ;;
    budgeted) retry='[routes.retry]
attempts = 3
on = ["503"]
backoff = "1ms"
max_backoff = "5ms"
budget_ratio = 0.2
budget_min_per_sec = 0' ;;
  esac
  cat > "$x/storm-$variant.toml" <<EOF
version = "storm-$variant"
[[listeners]]
address = "127.0.0.1:$lp"
[admin]
address = "127.0.0.1:$ap"
[[upstreams]]
name = "outage"
endpoints = ["127.0.0.1:$p1", "127.0.0.1:$p2", "127.0.0.1:$p3", "127.0.0.1:$p4"]
[[routes]]
id = "api"
path = { prefix = "/" }
upstream = "outage"
$retry
EOF
  start_gw "$x/storm-$variant.toml"
  $rb run --url "http://127.0.0.1:$lp/" --rate 1000 --duration 10s --warmup 1s --cpus 0 \
    --json "$x/storm-$variant.json" > /dev/null 2>&1 || true
  metrics "$ap" > "$x/storm-$variant.metrics"
  stop_gw
done
python3 "$(dirname "$0")/summarize.py" "$out"
