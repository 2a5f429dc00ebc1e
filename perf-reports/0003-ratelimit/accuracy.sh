#!/usr/bin/env bash
# Accuracy of one global limit across nodes (perf-reports/0003-ratelimit): two gateway processes
# (nodes a and b, two workers each) share one limit through Redis; ringbench offers load on one
# key to each node at once, skewed as each scenario says; admitted/s is read from the 200s in the
# measured window. Also the embedded mode: one node, two workers, no Redis.
# env: REPS (3), DUR (10s). Needs target/release/{ringgate,ringbench} and redis-server.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=perf-reports/0003-ratelimit
reps=${REPS:-3}; dur=${DUR:-10s}
rg=target/release/ringgate; rb=target/release/ringbench
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
mkdir -p "$dir/accuracy"
redis_port=$(free_port)
redis-server --port "$redis_port" --save "" --appendonly no --bind 127.0.0.1 > "$dir/accuracy/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
up_port=$(free_port)
$rb upstream --listen "127.0.0.1:$up_port" > "$dir/accuracy/upstream.log" 2>&1 &
pids+=($!)
printf '[workers]\ncount = 2\npin = false\n' > "$dir/accuracy/profile.toml"

# node NAME STORE_LINE RATE BURST -> starts a gateway, prints its port (its PID goes to NAME.pid:
# this runs in a command substitution's subshell, which cannot add to the caller's list)
node() {
  local name=$1 store=$2 lrate=$3 burst=$4 port
  port=$(free_port)
  cat > "$dir/accuracy/$name.toml" <<CFG
version = "accuracy-$name"
[[listeners]]
address = "127.0.0.1:$port"
[rate_limit]
tick = "20ms"
node_id = "$name"
$store
[[rate_limits]]
name = "global"
key = { header = "x-api-key" }
rate = $lrate
burst = $burst
[[upstreams]]
name = "up"
endpoints = ["127.0.0.1:$up_port"]
[[routes]]
id = "all"
path = { prefix = "/" }
upstream = "up"
rate_limits = ["global"]
CFG
  $rg serve --config "$dir/accuracy/$name.toml" --profile "$dir/accuracy/profile.toml" > "$dir/accuracy/$name.log" 2>&1 &
  echo $! > "$dir/accuracy/$name.pid"
  for _ in $(seq 100); do curl -fs -o /dev/null -H 'x-api-key: warm' "http://127.0.0.1:$port/" && break; sleep 0.1; done
  echo "$port"
}

echo "| scenario | limit | offered a + b req/s | rep | admitted/s | vs limit | refused/s | other |" > "$dir/accuracy.md"
echo "|---|---|---|---|---|---|---|---|" >> "$dir/accuracy.md"
run() {
  local label=$1 lrate=$2 burst=$3 ra=$4 rb_=$5 store=$6 key
  for rep in $(seq "$reps"); do
    redis-cli -p "$redis_port" flushall >/dev/null
    pa=$(node "a-$label-$rep" "$store" "$lrate" "$burst")
    [ "$rb_" != 0 ] && pb=$(node "b-$label-$rep" "$store" "$lrate" "$burst")
    key="acc-$label-$rep"
    $rb run --url "http://127.0.0.1:$pa/" --rate "$ra" --duration "$dur" --warmup 0s -H "x-api-key: $key" \
      --json "$dir/accuracy/$label-$rep-a.json" > /dev/null 2>&1 &
    ja=$!
    if [ "$rb_" != 0 ]; then
      $rb run --url "http://127.0.0.1:$pb/" --rate "$rb_" --duration "$dur" --warmup 0s -H "x-api-key: $key" \
        --json "$dir/accuracy/$label-$rep-b.json" > /dev/null 2>&1 &
      jb=$!; wait $jb || true
    fi
    wait $ja || true
    python3 - "$dir/accuracy" "$label" "$rep" "$lrate" "$burst" "$ra" "$rb_" >> "$dir/accuracy.md" <<'PY'
import json, os, sys
d, label, rep, lrate, burst, ra, rb = sys.argv[1:]
ok = refused = other = 0
window = None
for side in ("a", "b"):
    f = os.path.join(d, f"{label}-{rep}-{side}.json")
    if not os.path.exists(f):
        continue
    r = json.load(open(f))
    window = r["window_s"]
    st = r["counts"]["statuses"]
    ok += st.get("200", 0)
    refused += st.get("429", 0)
    other += sum(v for k, v in st.items() if k not in ("200", "429")) + r["counts"]["errors"]
adm = ok / window
print(f"| {label} | {float(lrate):,.0f}/s burst {burst} | {ra} + {rb} | {rep} | {adm:,.0f} | {adm / float(lrate):.3f} | {refused / window:,.0f} | {other} |")
PY
    # Stop this repetition's gateways (started by node(), by their PID).
    for f in "$dir/accuracy/a-$label-$rep.pid" "$dir/accuracy/b-$label-$rep.pid"; do
      [ -f "$f" ] && { kill "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }
    done
  done
}
redis="redis = \"redis://127.0.0.1:$redis_port/\""
run redis-90-10 1000 100 1350 150 "$redis"
run redis-50-50 1000 100 750 750 "$redis"
run redis-5k-90-10 5000 500 7200 800 "$redis"
run local-2-workers 1000 100 1500 0 ""
cat "$dir/accuracy.md"
