#!/bin/bash
# Issue 16, first measurement: what the I/O layer alone costs per request. The same
# request/response relay (core/examples/relay.rs) on monoio and on our own ring (core::rt), with
# the ring's levers one at a time, beside the real gateway (`ringgate proxy`) and nginx as
# references; open-model load from ringbench, keep-alive on both sides.
# Placement: relay/proxy on CPU 1; ringbench and its stub upstream on CPU 0.
# Usage (repository root, release builds of ringbench, ringgate and the relay example):
#   cargo build --release -p ringbench -p ringgate && cargo build --release -p ringgate-core --example relay
#   REPS=3 SECS=8 OUT=/tmp/own-ring perf-reports/0012-own-ring/relay.sh
#   python3 perf-reports/0012-own-ring/summarize.py /tmp/own-ring
# COUNTS=1 also counts per request (perf tracepoints, 2,000 req/s): io_uring submissions,
# syscalls, io_uring_enter calls, poll arms and context switches of each variant.
set -euo pipefail
REPS="${REPS:-3}"; SECS="${SECS:-8}"; OUT="${OUT:-/tmp/own-ring}"; RATES="${RATES:-5000 20000}"
VARIANTS="${VARIANTS:-monoio ring ring-detached ring-nobufs ring-noregfd ring-defer ringgate nginx}"
RB=./target/release/ringbench; RELAY=./target/release/examples/relay; RG=./target/release/ringgate
mkdir -p "$OUT"
up_port=$((20000 + RANDOM % 12000))
taskset -c 0 "$RB" upstream --listen "127.0.0.1:$up_port" --body-bytes 64 >"$OUT/upstream.log" 2>&1 &
up=$!
work=$(mktemp -d)
cleanup() { kill "$up" 2>/dev/null || true; [ -n "${tp:-}" ] && kill "$tp" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
sleep 0.3

# Starts variant $1 on port $2 (CPU 1); sets tp to its PID.
start() {
  local v=$1 port=$2 env=()
  case "$v" in
    monoio) taskset -c 1 "$RELAY" monoio "127.0.0.1:$port" "127.0.0.1:$up_port" >"$work/t.log" 2>&1 & tp=$! ;;
    ring|ring-*)
      case "$v" in
        ring-nobufs) env=(RING_BUFS=0) ;;
        ring-noregfd) env=(RING_REGFD=0) ;;
        ring-defer) env=(RING_TASKRUN=defer) ;;
        ring-detached) env=(RING_SEND=detached) ;;
      esac
      env "${env[@]}" taskset -c 1 "$RELAY" ring "127.0.0.1:$port" "127.0.0.1:$up_port" >"$work/t.log" 2>&1 & tp=$! ;;
    ringgate)
      printf '[workers]\ncpus = [1]\n' >"$work/profile.toml"
      taskset -c 1 "$RG" proxy --listen "127.0.0.1:$port" --to "127.0.0.1:$up_port" --profile "$work/profile.toml" >"$work/t.log" 2>&1 & tp=$! ;;
    nginx)
      mkdir -p "$work/ng"
      cat >"$work/ng/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $work/ng/nginx.pid;
error_log $work/ng/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $work/ng/body; proxy_temp_path $work/ng/proxy;
  fastcgi_temp_path $work/ng/f; uwsgi_temp_path $work/ng/u; scgi_temp_path $work/ng/s;
  keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$up_port; keepalive 256; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$port backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGX
      taskset -c 1 nginx -p "$work/ng" -e "$work/ng/error.log" -c "$work/ng/nginx.conf" >"$work/t.log" 2>&1 & tp=$! ;;
  esac
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
    sleep 0.05
  done
  echo "$v did not come up: $(cat "$work/t.log")" >&2; return 1
}

stop() { kill "$tp" 2>/dev/null || true; wait "$tp" 2>/dev/null || true; tp=""; }

# All PIDs of the variant (nginx's worker is a child).
pids() { echo "$tp $(pgrep -P "$tp" | tr '\n' ' ')" | xargs | tr ' ' ','; }

for rep in $(seq 1 "$REPS"); do
  for rate in $RATES; do
    for v in $VARIANTS; do
      port=$((20000 + RANDOM % 12000))
      start "$v" "$port"
      "$RB" run --url "http://127.0.0.1:$port/" --rate "$rate" --duration "${SECS}s" --warmup 1s \
        --conns 16 --cpus 0 --target-pid "$(pids)" --json "$OUT/$v-$rate-r$rep.json" \
        >"$OUT/$v-$rate-r$rep.log" 2>&1 || true
      stop
      echo "rep $rep rate $rate $v: $(grep -E 'target cpu' "$OUT/$v-$rate-r$rep.log" | sed 's/.*cores, //')"
    done
  done
done

if [ "${COUNTS:-0}" = 1 ]; then
  for v in $VARIANTS; do
    port=$((20000 + RANDOM % 12000))
    start "$v" "$port"
    perf stat -x, -e 'io_uring:io_uring_submit_req,raw_syscalls:sys_enter,context-switches,io_uring:io_uring_poll_arm,syscalls:sys_enter_io_uring_enter' \
      -p "$(pids)" -o "$OUT/$v-counts.perf" -- sleep 7 &
    pp=$!
    "$RB" run --url "http://127.0.0.1:$port/" --rate 2000 --duration 5s --warmup 1s --conns 16 \
      --cpus 0 --json "$OUT/$v-counts.json" >/dev/null 2>&1 || true
    wait "$pp"
    stop
    echo "counted $v"
  done
fi
