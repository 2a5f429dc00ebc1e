#!/usr/bin/env bash
# perf-reports/0006-tls-h2: CPU per request of ringgate vs nginx terminating TLS, side by side in
# one run, at the same offered load, and HTTP/2 through h2load.
#
# usage: perf-reports/0006-tls-h2/run.sh OUT_DIR REPS DURATION
# env: PROXY_CPU (default 1: both proxies, one worker each), LOAD_CPU (default 0: generators and
#      the upstream stub), KA_RATE (3000), RESUME_RATE (1000), FULL_RATE (500), H2_RATE (5000).
# Mixes, each run against both proxies in turn, repetitions interleaved:
#   ka      HTTP/1.1 keep-alive over TLS 1.3         ringbench run, open model, KA_RATE req/s
#   resume  a new connection per request, resumed    ringbench --requests-per-conn 1, RESUME_RATE
#   full    a new connection per request, full       ringbench --requests-per-conn 1 --tls-resume off
#   h2      HTTP/2 over TLS (ALPN h2), 4 connections  h2load --rps, H2_RATE req/s in all
#   h2c     HTTP/2 cleartext, prior knowledge        h2load --rps, H2_RATE req/s in all
# The generator does TLS too, on the load CPU shared with the upstream: its schedule-lag check is
# relaxed from 1 ms to 5 ms p99 (--max-lag 5ms), the same for both proxies.
# The proxy's CPU (utime+stime of all its processes) is divided by the requests answered 200.
# Needs target/release/ringgate and target/release/ringbench, nginx, h2load, openssl.
# Only processes started here are stopped, by their PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 3 ] || { sed -n 2,17p "$0"; exit 2; }
out=$1; reps=$2; dur=$3
proxy_cpu=${PROXY_CPU:-1}; load_cpu=${LOAD_CPU:-0}
ka_rate=${KA_RATE:-3000}; resume_rate=${RESUME_RATE:-1000}; full_rate=${FULL_RATE:-500}; h2_rate=${H2_RATE:-5000}
rg=target/release/ringgate; rb=target/release/ringbench
[ -x $rg ] && [ -x $rb ] || { echo "build first: cargo build --release"; exit 2; }
mkdir -p "$out/runs" "$out/logs"
echo "perf-reports/0006-tls-h2/run.sh $out $reps $dur  (PROXY_CPU=$proxy_cpu LOAD_CPU=$load_cpu KA_RATE=$ka_rate RESUME_RATE=$resume_rate FULL_RATE=$full_rate H2_RATE=$h2_rate) at $(git rev-parse --short HEAD)" > "$out/command.txt"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
logs=$(cd "$out/logs" && pwd)

# One ECDSA P-256 certificate for both proxies (what most edges serve), signed by a local CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$logs/ca.key" -out "$logs/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench.example" \
  -keyout "$logs/server.key" -out "$logs/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:bench.example,IP:127.0.0.1\n' > "$logs/san.ext"
openssl x509 -req -in "$logs/server.csr" -CA "$logs/ca.pem" -CAkey "$logs/ca.key" -CAcreateserial \
  -days 2 -extfile "$logs/san.ext" -out "$logs/server.pem" 2>/dev/null

up_port=$(free_port)
taskset -c "$load_cpu" $rb upstream --listen "127.0.0.1:$up_port" > "$logs/upstream.log" 2>&1 &
pids+=($!)

rg_port=$(free_port); rg_h2c=$(free_port)
cat > "$logs/ringgate.toml" <<CONF
version = "0006"
[[listeners]]
address = "127.0.0.1:$rg_port"
[listeners.tls]
certificates = [{ cert = "$logs/server.pem", key = "$logs/server.key" }]
[[listeners]]
address = "127.0.0.1:$rg_h2c"
[[upstreams]]
name = "up"
endpoints = ["127.0.0.1:$up_port"]
[[routes]]
id = "all"
path = { prefix = "/" }
upstream = "up"
CONF
printf '[workers]\ncpus = [%s]\n' "$proxy_cpu" > "$logs/profile.toml"
taskset -c "$proxy_cpu" $rg serve --config "$logs/ringgate.toml" --profile "$logs/profile.toml" > "$logs/ringgate.log" 2>&1 &
rg_pid=$!; pids+=($rg_pid)

ng_port=$(free_port); ng_h2c=$(free_port)
mkdir -p "$logs/nginx"
cat > "$logs/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $logs/nginx/nginx.pid;
error_log $logs/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # No cap on requests per connection (nginx's default of 1000 would close the benchmark's
  # keep-alive and HTTP/2 connections mid-run; ringgate has no such cap).
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  upstream up { server 127.0.0.1:$up_port; keepalive 64; }
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_tickets on;
  server {
    listen 127.0.0.1:$ng_port ssl http2;
    ssl_certificate $logs/server.pem;
    ssl_certificate_key $logs/server.key;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:$ng_h2c http2;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CONF
taskset -c "$proxy_cpu" nginx -c "$logs/nginx.conf" -p "$logs/nginx" > "$logs/nginx.out" 2>&1 &
ng_pid=$!; pids+=($ng_pid)

for _ in $(seq 100); do
  curl -fs -o /dev/null --cacert "$logs/ca.pem" "https://127.0.0.1:$rg_port/" \
    && curl -fs -o /dev/null --cacert "$logs/ca.pem" "https://127.0.0.1:$ng_port/" && break
  sleep 0.1
done
ng_pids="$ng_pid,$(pgrep -P "$ng_pid" | paste -sd, -)"
echo "ringgate: $(head -1 "$logs/ringgate.log")"
echo "nginx: $(nginx -v 2>&1), pids $ng_pids"

cpu_ticks() { # sum of utime+stime over the given comma-separated pids
  local t=0 p
  for p in ${1//,/ }; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo $t
}
hz=$(getconf CLK_TCK)

run_rb() { # name pids port mix rate
  local name=$1 tp=$2 port=$3 mix=$4 rate=$5 rep=$6 extra=()
  case $mix in
    # A fixed set of keep-alive connections, all made during the warm-up.
    ka) extra=(--conns 16 --max-conns 16) ;;
    resume) extra=(--requests-per-conn 1 --max-conns 256) ;;
    full) extra=(--requests-per-conn 1 --tls-resume off --max-conns 256) ;;
  esac
  local f="$out/runs/$mix-$name-$rep.json"
  $rb run --url "https://127.0.0.1:$port/" --ca "$logs/ca.pem" --rate "$rate" --duration "$dur" \
    --warmup 2s --cpus "$load_cpu" --target-pid "$tp" --json "$f" --max-lag 5ms "${extra[@]}" > /dev/null 2>&1 || true
}

run_h2load() { # name pids url rep mix
  local name=$1 tp=$2 url=$3 rep=$4 mix=$5
  local f="$out/runs/$mix-$name-$rep.txt" secs=${dur%s}
  # Warm-up, unmeasured.
  taskset -c "$load_cpu" h2load -c 4 -m 10 --rps $((h2_rate / 4)) -D 2 "$url" > /dev/null 2>&1 || true
  local before after
  before=$(cpu_ticks "$tp")
  taskset -c "$load_cpu" h2load -c 4 -m 10 --rps $((h2_rate / 4)) -D "$secs" "$url" > "$f" 2>&1 || true
  after=$(cpu_ticks "$tp")
  echo "cpu_ticks $((after - before)) hz $hz" >> "$f"
}

for rep in $(seq "$reps"); do
  for mix in ka resume full h2 h2c; do
    for name in ringgate nginx; do
      if [ $name = ringgate ]; then tp=$rg_pid; port=$rg_port; h2c=$rg_h2c; else tp=$ng_pids; port=$ng_port; h2c=$ng_h2c; fi
      case $mix in
        ka) run_rb $name "$tp" "$port" ka "$ka_rate" "$rep" ;;
        resume) run_rb $name "$tp" "$port" resume "$resume_rate" "$rep" ;;
        full) run_rb $name "$tp" "$port" full "$full_rate" "$rep" ;;
        h2) run_h2load $name "$tp" "https://127.0.0.1:$port/" "$rep" h2 ;;
        h2c) run_h2load $name "$tp" "http://127.0.0.1:$h2c/" "$rep" h2c ;;
      esac
      echo "rep $rep $mix $name done"
    done
  done
done
python3 perf-reports/0006-tls-h2/summarize.py "$out" | tee "$out/summary.md"
