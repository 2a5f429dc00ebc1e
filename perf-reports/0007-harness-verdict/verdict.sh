#!/usr/bin/env bash
# The three verdict cases of issue 17 item 6, against reference stubs of known service time, with
# the exit code of each run. Usage: verdict.sh OUT_DIR [RINGBENCH]
set -uo pipefail
out=${1:?out dir}; rb=${2:-target/release/ringbench}
mkdir -p "$out"
port() { python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])"; }
stub() { local p; p=$(port); $rb upstream --listen "127.0.0.1:$p" "$@" > /dev/null 2>&1 & echo "$p $!"; }

# 1. Pool queueing: 4 connections x 20 ms = 200/s through ringbench's own pool, 220/s offered.
read -r p pid < <(stub --latency fixed:20ms); sleep 0.3
$rb run --url "http://127.0.0.1:$p/" --rate 220 --duration 5s --warmup 1s --conns 4 --max-conns 4 \
  --json "$out/pool.json" > "$out/pool.txt"; echo "pool queueing: exit $?" | tee -a "$out/exit-codes.txt"
kill "$pid"

# 2. Over capacity: one server of 5 ms per worker = 200/s, 220/s offered, 2 s grace.
read -r p pid < <(stub --latency fixed:5ms --concurrency 1); sleep 0.3
$rb run --url "http://127.0.0.1:$p/" --rate 220 --duration 5s --warmup 1s \
  --json "$out/over.json" > "$out/over.txt"; echo "over capacity: exit $?" | tee -a "$out/exit-codes.txt"
# ... and 10% under it.
$rb run --url "http://127.0.0.1:$p/" --rate 180 --duration 5s --warmup 1s \
  --json "$out/under.json" > "$out/under.txt"; echo "under capacity: exit $?" | tee -a "$out/exit-codes.txt"
kill "$pid"

# 3. Interval log start: StartTime against the wall clock before the run.
read -r p pid < <(stub); sleep 0.3
before=$(date +%s.%N)
$rb run --url "http://127.0.0.1:$p/" --rate 500 --duration 3s --warmup 1s --hlog "$out/run.hlog" \
  --quiet; echo "hlog run: exit $?" | tee -a "$out/exit-codes.txt"
after=$(date +%s.%N)
start=$(sed -n 's/^#\[StartTime: \([0-9.]*\).*/\1/p' "$out/run.hlog")
echo "hlog: wall clock before the run $before, StartTime $start, after the run $after" | tee -a "$out/exit-codes.txt"
kill "$pid"
