#!/usr/bin/env bash
# A/B comparison of ringgate configs under the same open-model load (ringbench run), side by side
# in one run: every variant runs at the same time on its own port, pinned to the proxy CPU, and the
# repetitions interleave the variants so drift on a noisy host hits them alike.
#
# usage: scripts/ab-compare.sh OUT_DIR RATES REPS DURATION NAME=CONFIG [NAME=CONFIG...]
#   RATES     comma-separated request rates, e.g. 5000,20000
#   CONFIG    a ringgate config template: @LISTEN@ and @UPSTREAM@ are replaced, @DIR@ is OUT_DIR
# env: PROXY_CPU (default 1), LOAD_CPU (default 0: generator and upstream stub), WARMUP (2s),
#      UPSTREAM_ARGS (extra `ringbench upstream` flags), URL_PATH (default /),
#      RUN_ARGS (extra `ringbench run` flags, e.g. `--scenario FILE` or `-H 'name: value'`).
# Needs: target/release/ringgate and target/release/ringbench (cargo build --release).
# Writes OUT_DIR/runs/<name>-<rate>-<rep>.json, OUT_DIR/summary.md (medians and spread) and
# OUT_DIR/command.txt. Only processes started here are stopped, by their PID.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 5 ] || { sed -n 2,12p "$0"; exit 2; }
out=$1; rates=$2; reps=$3; dur=$4; shift 4
proxy_cpu=${PROXY_CPU:-1}; load_cpu=${LOAD_CPU:-0}; warmup=${WARMUP:-2s}; url_path=${URL_PATH:-/}
rg=target/release/ringgate; rb=target/release/ringbench
[ -x $rg ] && [ -x $rb ] || { echo "build first: cargo build --release"; exit 2; }
mkdir -p "$out/runs" "$out/logs"
echo "scripts/ab-compare.sh $out $rates $reps $dur $*  (PROXY_CPU=$proxy_cpu LOAD_CPU=$load_cpu WARMUP=$warmup UPSTREAM_ARGS='${UPSTREAM_ARGS:-}' URL_PATH=$url_path RUN_ARGS='${RUN_ARGS:-}')" > "$out/command.txt"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

up_port=$(free_port)
# shellcheck disable=SC2086
taskset -c "$load_cpu" $rb upstream --listen "127.0.0.1:$up_port" ${UPSTREAM_ARGS:-} > "$out/logs/upstream.log" 2>&1 &
up_pid=$!; pids+=("$up_pid")
printf '[workers]\ncpus = [%s]\n' "$proxy_cpu" > "$out/logs/profile.toml"
names=(); ports=(); gpids=()
for spec in "$@"; do
  name=${spec%%=*}; tmpl=${spec#*=}
  port=$(free_port)
  sed -e "s|@LISTEN@|127.0.0.1:$port|g" -e "s|@UPSTREAM@|127.0.0.1:$up_port|g" -e "s|@DIR@|$out|g" "$tmpl" > "$out/logs/$name.toml"
  taskset -c "$proxy_cpu" $rg serve --config "$out/logs/$name.toml" --profile "$out/logs/profile.toml" > "$out/logs/$name.log" 2>&1 &
  gpids+=($!); pids+=($!); names+=("$name"); ports+=("$port")
done
for i in "${!names[@]}"; do
  for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:${ports[$i]}$url_path" && break; sleep 0.1; done
  echo "${names[$i]}: $(head -1 "$out/logs/${names[$i]}.log")"
done
IFS=, read -ra rate_list <<< "$rates"
for rep in $(seq "$reps"); do
  for rate in "${rate_list[@]}"; do
    for i in "${!names[@]}"; do
      f="$out/runs/${names[$i]}-$rate-$rep.json"
      # shellcheck disable=SC2086
      $rb run --url "http://127.0.0.1:${ports[$i]}$url_path" --rate "$rate" --duration "$dur" --warmup "$warmup" \
        --cpus "$load_cpu" --target-pid "${gpids[$i]}" --json "$f" ${RUN_ARGS:-} > /dev/null 2>&1 || true
      python3 - "$f" "${names[$i]}" "$rate" "$rep" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t = r.get("target_cpu") or {}
print(f"{sys.argv[2]:>14} rate={sys.argv[3]:>6} rep={sys.argv[4]} verdict={r['verdict']} "
      f"cpu/req={t.get('us_per_success', float('nan')):.2f}us p50={r['latency']['response']['p50_ns']/1e3:.0f}us "
      f"p99={r['latency']['response']['p99_ns']/1e3:.0f}us errors={r['counts']['errors']} ok={r['counts']['success']}")
EOF
    done
  done
done
python3 - "$out" "${names[@]}" <<'EOF'
import json, sys, glob, os, statistics as st
out, names = sys.argv[1], sys.argv[2:]
rows = {}
for f in sorted(glob.glob(os.path.join(out, "runs", "*.json"))):
    base = os.path.basename(f)[:-5]
    name, rate, rep = base.rsplit("-", 2)
    r = json.load(open(f))
    rows.setdefault((name, int(rate)), []).append(r)
lines = ["| variant | rate | valid runs | CPU µs/success median (min..max) | CPU µs/answer median | p50 µs median | p99 µs median | statuses (all runs) | errors | excluded |",
         "|---|---|---|---|---|---|---|---|---|---|"]
med = {}
med_ans = {}
for (name, rate), rs in sorted(rows.items(), key=lambda x: (x[0][1], names.index(x[0][0]) if x[0][0] in names else 99)):
    ok = [r for r in rs if r["verdict"] == "valid" and r.get("target_cpu")]
    excl = [r["verdict"] for r in rs if r not in ok]
    errs = sum(r["counts"]["errors"] + r["counts"]["timeouts"] for r in rs)
    sts = {}
    for r in rs:
        for k, v in r["counts"]["statuses"].items():
            sts[k] = sts.get(k, 0) + v
    stext = ", ".join(f"{k}: {v}" for k, v in sorted(sts.items()))
    if not ok:
        lines.append(f"| {name} | {rate} | 0 | - | - | - | - | {stext} | {errs} | {', '.join(excl)} |")
        continue
    cpu = [r["target_cpu"]["us_per_success"] for r in ok]
    per_answer = [r["target_cpu"]["cpu_seconds"] * 1e6 / max(1, r["counts"]["completed"]) for r in ok]
    p50 = [r["latency"]["response"]["p50_ns"] / 1e3 for r in ok]
    p99 = [r["latency"]["response"]["p99_ns"] / 1e3 for r in ok]
    med[(name, rate)] = st.median(cpu)
    med_ans[(name, rate)] = st.median(per_answer)
    lines.append(f"| {name} | {rate} | {len(ok)} | {st.median(cpu):.2f} ({min(cpu):.2f}..{max(cpu):.2f}) | "
                 f"{st.median(per_answer):.2f} | {st.median(p50):.0f} | {st.median(p99):.0f} | {stext} | {errs} | {', '.join(excl) or '-'} |")
lines.append("")
if len(names) >= 2:
    base = names[0]
    for (name, rate), v in sorted(med.items(), key=lambda x: x[0][1]):
        if name != base and (base, rate) in med:
            lines.append(f"- {name} vs {base} at {rate} req/s: CPU per successful request ratio **{v / med[(base, rate)]:.3f}**, "
                         f"per answer (any status) **{med_ans[(name, rate)] / med_ans[(base, rate)]:.3f}**")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
