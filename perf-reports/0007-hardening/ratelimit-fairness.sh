#!/usr/bin/env bash
# Two-node fairness and Redis-outage figures of the rate limiter (perf-reports/0007-hardening,
# issue 14 item 7). Two gateway processes (nodes a and b, two workers each) share one limit
# through one redis-server; ringbench offers load on one key to each node at once.
#   equal:   200/s (burst 20), 300 + 300 req/s for 10 s: what each node admitted.
#   skewed:  400/s (burst 40), 450 + 150 req/s for 10 s.
#   outage:  400/s (burst 40), 450 + 150 req/s: 5 s with Redis up, then Redis killed (by its
#            PID) and 10 s down; meanwhile 50 req/s on node a's fail-closed route, idle until
#            the kill. Admitted per node in each phase, and what the fail-closed route let through.
# Each scenario runs once per binary given, side by side: BINS="label:path ..." (default: this
# tree's debug build as "new"). env: REPS (2). Needs target/debug/ringbench and redis-server.
# Load targets 127.0.0.1 only; every process started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=perf-reports/0007-hardening
out=$dir/ratelimit-fairness
reps=${REPS:-2}
bins=${BINS:-"new:target/debug/ringgate"}
rb=target/debug/ringbench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
mkdir -p "$out"
redis_port=$(free_port)
redis_pid=
start_redis() {
  redis-server --port "$redis_port" --save "" --appendonly no --bind 127.0.0.1 >> "$out/redis.log" 2>&1 &
  redis_pid=$!
  pids+=("$redis_pid")
  for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.1; done
  echo "redis did not start" >&2; exit 1
}
kill_redis() { kill -9 "$redis_pid"; wait "$redis_pid" 2>/dev/null || true; }
start_redis
up_port=$(free_port)
$rb upstream --listen "127.0.0.1:$up_port" > "$out/upstream.log" 2>&1 &
pids+=($!)
printf '[workers]\ncount = 2\npin = false\n' > "$out/profile.toml"

# node BIN NAME RATE BURST -> starts a gateway, prints its port (its PID goes to NAME.pid)
node() {
  local bin=$1 name=$2 lrate=$3 burst=$4 port
  port=$(free_port)
  cat > "$out/$name.toml" <<CFG
version = "fairness-$name"
[[listeners]]
address = "127.0.0.1:$port"
[rate_limit]
tick = "20ms"
node_id = "$name"
redis = "redis://127.0.0.1:$redis_port/"
[[rate_limits]]
name = "global"
key = { header = "x-api-key" }
rate = $lrate
burst = $burst
[[rate_limits]]
name = "strict"
key = { header = "x-api-key" }
rate = $lrate
burst = $burst
on_store_failure = "closed"
[[upstreams]]
name = "up"
endpoints = ["127.0.0.1:$up_port"]
[[routes]]
id = "closed"
path = { prefix = "/closed" }
upstream = "up"
rate_limits = ["strict"]
[[routes]]
id = "all"
path = { prefix = "/" }
upstream = "up"
rate_limits = ["global"]
CFG
  $bin serve --config "$out/$name.toml" --profile "$out/profile.toml" > "$out/$name.log" 2>&1 &
  echo $! > "$out/$name.pid"
  for _ in $(seq 100); do curl -fs -o /dev/null -H 'x-api-key: warm' "http://127.0.0.1:$port/" && break; sleep 0.1; done
  echo "$port"
}
stop_nodes() { for f in "$out"/*.pid; do [ -f "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }; done; }
# bench URL RATE SECS KEY JSON
bench() { $rb run --url "$1" --rate "$2" --duration "$3" --warmup 0s -H "x-api-key: $4" --json "$5" > /dev/null 2>&1; }
ok() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["counts"]["statuses"].get(sys.argv[2],0))' "$1" "$2"; }
# The longest stall of the load generators' cores in the given runs (a stall of more than a
# tick or two starves one node of load: such a repetition measures the machine, not the limiter).
stall() { python3 -c '
import json, re, sys
worst = 0.0
for f in sys.argv[1:]:
    for why in json.load(open(f))["reasons"]:
        m = re.search(r"stalled for up to ([0-9.]+)(ms|s)", why)
        if m:
            worst = max(worst, float(m.group(1)) * (1000 if m.group(2) == "s" else 1))
print(f"{worst:.0f} ms")' "$@"; }

{
  echo "| binary | scenario | limit | offered a + b | rep | admitted a | admitted b | b / a | total/s | vs limit | load stall |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
} > "$out/split.md"
{
  echo "| binary | limit | offered a + b | rep | up 5 s: a, b admitted/s | down 10 s: a, b admitted/s | a, b vs last share | down total vs limit | fail-closed route: 200 / 503 while down | load stall |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} > "$out/outage.md"

split() {
  local label=$1 bin=$2 scen=$3 lrate=$4 burst=$5 ra=$6 rbr=$7
  for rep in $(seq "$reps"); do
    redis-cli -p "$redis_port" flushall >/dev/null
    pa=$(node "$bin" "a-$label-$scen-$rep" "$lrate" "$burst")
    pb=$(node "$bin" "b-$label-$scen-$rep" "$lrate" "$burst")
    key="k-$label-$scen-$rep"
    bench "http://127.0.0.1:$pa/" "$ra" 10s "$key" "$out/$label-$scen-$rep-a.json" &
    ja=$!
    bench "http://127.0.0.1:$pb/" "$rbr" 10s "$key" "$out/$label-$scen-$rep-b.json" || true
    wait $ja || true
    a=$(ok "$out/$label-$scen-$rep-a.json" 200); b=$(ok "$out/$label-$scen-$rep-b.json" 200)
    st=$(stall "$out/$label-$scen-$rep-a.json" "$out/$label-$scen-$rep-b.json")
    python3 -c "
a,b,l=$a,$b,$lrate
print(f'| $label | $scen | {l:,}/s burst $burst | $ra + $rbr | $rep | {a} | {b} | {b/a:.2f} | {(a+b)/10:,.0f} | {(a+b)/10/l:.3f} | $st |')" >> "$out/split.md"
    stop_nodes
  done
}

outage() {
  local label=$1 bin=$2 lrate=400 burst=40 ra=450 rbr=150
  for rep in $(seq "$reps"); do
    redis-cli -p "$redis_port" flushall >/dev/null
    pa=$(node "$bin" "a-$label-out-$rep" "$lrate" "$burst")
    pb=$(node "$bin" "b-$label-out-$rep" "$lrate" "$burst")
    key="o-$label-$rep"; p="$out/$label-out-$rep"
    # The fail-closed key is used once, then idle until the outage.
    curl -s -o /dev/null -H "x-api-key: $key" "http://127.0.0.1:$pa/closed"
    bench "http://127.0.0.1:$pa/" "$ra" 5s "$key" "$p-up-a.json" & ja=$!
    bench "http://127.0.0.1:$pb/" "$rbr" 5s "$key" "$p-up-b.json" || true
    wait $ja || true
    kill_redis
    bench "http://127.0.0.1:$pa/" "$ra" 10s "$key" "$p-down-a.json" & ja=$!
    bench "http://127.0.0.1:$pa/closed" 50 10s "$key" "$p-down-closed.json" & jc=$!
    bench "http://127.0.0.1:$pb/" "$rbr" 10s "$key" "$p-down-b.json" || true
    wait $ja || true; wait $jc || true
    ua=$(ok "$p-up-a.json" 200); ub=$(ok "$p-up-b.json" 200)
    da=$(ok "$p-down-a.json" 200); db=$(ok "$p-down-b.json" 200)
    c200=$(ok "$p-down-closed.json" 200); c503=$(ok "$p-down-closed.json" 503)
    st=$(stall "$p"-*.json)
    python3 -c "
ua,ub,da,db,l=$ua/5,$ub/5,$da/10,$db/10,$lrate
print(f'| $label | {l}/s burst $burst | $ra + $rbr | $rep | {ua:.0f}, {ub:.0f} | {da:.0f}, {db:.0f} | {da/ua:.2f}, {db/ub:.2f} | {(da+db)/l:.3f} | $c200 / $c503 | $st |')" >> "$out/outage.md"
    stop_nodes
    start_redis
  done
}

for entry in $bins; do
  label=${entry%%:*}; bin=${entry#*:}
  split "$label" "$bin" equal 200 20 300 300
  split "$label" "$bin" skewed 400 40 450 150
  outage "$label" "$bin"
done
{
  echo "<!-- generated by ratelimit-fairness.sh; see ratelimit-fairness.md beside it -->"
  echo "### Two nodes sharing one limit"
  echo
  cat "$out/split.md"
  echo
  echo "### Redis killed mid-run"
  echo
  cat "$out/outage.md"
} > "$dir/ratelimit-fairness-results.md"
cat "$dir/ratelimit-fairness-results.md"
