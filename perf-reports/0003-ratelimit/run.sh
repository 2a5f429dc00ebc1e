#!/usr/bin/env bash
# Reproduces perf-reports/0003-ratelimit (from the repository root, on an idle 2-core machine,
# after `cargo build --release -p ringgate -p ringbench`):
#   1. CPU per request with rate limits off, reconciled in-process, and reconciled through Redis,
#      side by side at the same offered rate (scripts/ab-compare.sh);
#   2. Redis commands per second at 5,000 and 20,000 req/s, with one key and with 1,000 keys.
# env: RATE (10000), REPS (7), DUR (10s), PROXY_CPU (1), LOAD_CPU (0: generator and stub),
#      REDIS_CPU (default LOAD_CPU), REDIS_NICE (default 0; Redis's bursts of script work must
#      not stall the generator sharing its CPU, so the generator wins every wake-up).
# Only processes started here are stopped, by their PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=perf-reports/0003-ratelimit
rate=${RATE:-10000}; reps=${REPS:-7}; dur=${DUR:-10s}
proxy_cpu=${PROXY_CPU:-1}; load_cpu=${LOAD_CPU:-0}; redis_cpu=${REDIS_CPU:-$load_cpu}; redis_nice=${REDIS_NICE:-0}
rg=target/release/ringgate; rb=target/release/ringbench
[ -x $rg ] && [ -x $rb ] || { echo "build first: cargo build --release -p ringgate -p ringbench"; exit 2; }
command -v redis-server >/dev/null || { echo "needs redis-server"; exit 2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

mkdir -p "$dir/logs"
redis_port=$(free_port)
taskset -c "$redis_cpu" nice -n "$redis_nice" redis-server --port "$redis_port" --save "" --appendonly no --bind 127.0.0.1 \
  > "$dir/logs/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done

python3 -c 'print("\n".join(f"key-{i:04d}" for i in range(1000)))' > "$dir/logs/keys.txt"
cat > "$dir/logs/scenario.toml" <<SCEN
[[requests]]
name = "get"
weight = 1
method = "GET"
path = "/"
headers = { "x-api-key" = "\${keys}" }
[pools]
keys = { file = "$PWD/$dir/logs/keys.txt" }
SCEN
sed "s/@REDIS_PORT@/$redis_port/" "$dir/configs/redis.toml" > "$dir/logs/redis.toml"

# 1. CPU per request, side by side.
[ -n "${SKIP_CPU:-}" ] || RUN_ARGS="--scenario $dir/logs/scenario.toml" PROXY_CPU=$proxy_cpu LOAD_CPU=$load_cpu \
  scripts/ab-compare.sh "$dir/cpu" "$rate" "$reps" "$dur" \
  off="$dir/configs/off.toml" local="$dir/configs/local.toml" redis="$dir/logs/redis.toml"

# 2. Redis commands per second: one gateway on the Redis config, loads of increasing rate.
redis-cli -p "$redis_port" flushall >/dev/null
port=$(free_port)
sed -e "s|@LISTEN@|127.0.0.1:$port|" -e "s|@UPSTREAM@|127.0.0.1:$(free_port)|" "$dir/logs/redis.toml" > "$dir/logs/cmds.toml"
up_port=$(sed -n 's|^endpoints = \["127.0.0.1:\([0-9]*\)"\]|\1|p' "$dir/logs/cmds.toml")
taskset -c "$load_cpu" $rb upstream --listen "127.0.0.1:$up_port" > "$dir/logs/cmds-upstream.log" 2>&1 &
pids+=($!)
printf '[workers]\ncpus = [%s]\n' "$proxy_cpu" > "$dir/logs/cmds-profile.toml"
taskset -c "$proxy_cpu" $rg serve --config "$dir/logs/cmds.toml" --profile "$dir/logs/cmds-profile.toml" > "$dir/logs/cmds-gateway.log" 2>&1 &
gw=$!; pids+=($gw)
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
calls() { redis-cli -p "$redis_port" info commandstats | python3 -c '
import sys
n = 0
for line in sys.stdin:
    if line.startswith(("cmdstat_evalsha:", "cmdstat_eval:")):
        n += int(line.split("calls=")[1].split(",")[0])
print(n)'; }
rcpu() { redis-cli -p "$redis_port" info cpu | python3 -c '
import sys
v = dict(l.strip().split(":", 1) for l in sys.stdin if ":" in l)
print(float(v["used_cpu_user"]) + float(v["used_cpu_sys"]))'; }
# CPU seconds of the gateway's reconciler thread (its name is cut to 15 characters).
tcpu() { python3 - "$gw" <<'PY'
import os, sys
pid = sys.argv[1]
hz = os.sysconf("SC_CLK_TCK")
for tid in os.listdir(f"/proc/{pid}/task"):
    if open(f"/proc/{pid}/task/{tid}/comm").read().strip().startswith("ringgate-rateli"):
        f = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        print((int(f[11]) + int(f[12])) / hz)
        break
else:
    print(0)
PY
}
echo "| offered req/s | keys | achieved req/s | Redis script calls/s | calls per 1,000 requests | Redis CPU % | reconciler thread CPU % |" > "$dir/commands.md"
echo "|---|---|---|---|---|---|---|" >> "$dir/commands.md"
for r in 5000 20000; do
  for keys in one many; do
    if [ $keys = one ]; then args=(-H "x-api-key: key-0001"); else args=(--scenario "$dir/logs/scenario.toml"); fi
    c0=$(calls); u0=$(rcpu); r0=$(tcpu); t0=$(date +%s.%N)
    $rb run --url "http://127.0.0.1:$port/" --rate "$r" --duration 10s --warmup 0s --cpus "$load_cpu" \
      --target-pid "$gw" --json "$dir/logs/cmds-$r-$keys.json" "${args[@]}" > /dev/null 2>&1 || true
    c1=$(calls); u1=$(rcpu); r1=$(tcpu); t1=$(date +%s.%N)
    python3 - "$dir/logs/cmds-$r-$keys.json" "$r" "$keys" "$c0" "$c1" "$t0" "$t1" "$u0" "$u1" "$r0" "$r1" >> "$dir/commands.md" <<'PY'
import json, sys
f, r, keys, c0, c1, t0, t1, u0, u1, r0, r1 = sys.argv[1:]
rep = json.load(open(f))
secs = float(t1) - float(t0)
done = rep["counts"]["completed"]
calls = int(c1) - int(c0)
label = "1" if keys == "one" else "1,000"
cpu = 100 * (float(u1) - float(u0)) / secs
rec = 100 * (float(r1) - float(r0)) / secs
print(f"| {int(r):,} | {label} | {done / rep['window_s']:,.0f} | {calls / secs:,.0f} | {1000 * calls / max(done, 1):.2f} | {cpu:.1f} | {rec:.1f} |")
PY
  done
done
cat "$dir/commands.md"
