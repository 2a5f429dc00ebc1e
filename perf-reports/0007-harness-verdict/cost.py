#!/usr/bin/env python3
"""Generator CPU per request: ringbench (open model, fixed rate) against wrk (closed loop) at the
same throughput, on the same stub upstream, in interleaved repetitions.

Usage: cost.py OUT_DIR [REPS] [label=path/to/ringbench ...]
       cost.py --table OUT_DIR   (the table again from OUT_DIR/samples.csv and the runs' JSON)
  A label starting with "uring" names the io_uring prototype (bench-harness/examples/uring_gen.rs,
  built with `cargo build --release -p ringbench --example uring_gen`) instead of a ringbench
  binary; the stub is started from the first ringbench binary given.
  env: RATE (2000), SECS (10), LATENCY (fixed:4ms), WRK_CONNS (8: with 4 ms, wrk's closed
       loop then runs near RATE), GEN_CPU (0), STUB_CPU (1)

Placement: the stub upstream (ringbench upstream, one worker) on STUB_CPU, every generator
pinned to GEN_CPU with taskset. CPU is read from /proc: the sum over the generator's threads of
/proc/PID/task/TID/schedstat (time on CPU, ns), sampled at 2 s and at SECS-1 s after the start,
so start-up and teardown are outside the sample for both tools. Requests in that span: the rate
times its length for ringbench (fixed schedule; its JSON confirms the rate was achieved), and
wrk's Requests/sec times its length for wrk (a closed loop runs at a steady rate). Context
switches (voluntary + involuntary, /proc/PID/task/TID/status) over the same span count the
generator's wake-ups. Writes OUT_DIR/samples.csv and prints a markdown table of medians and
ranges. A ringbench sample whose schedule lag reached STALL_MS (100) is a host stall inside the
span (the generator was not running, so its CPU per request reads low, then catches up): it is
listed but left out of the medians. The other generators report no such figure, so a stall in
their span cannot be seen.
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_ns(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def switches(pid):
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if "ctxt_switches" in line:
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def sample(cmd, secs):
    """Runs cmd; returns (cpu_ns, switches, span_s, stdout) for the span [2 s, secs-1 s]."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t_start = time.monotonic()
    time.sleep(2.0)
    c0, s0, t0 = cpu_ns(p.pid), switches(p.pid), time.monotonic()
    time.sleep(max(0.5, secs - 1.0 - (t0 - t_start)))
    c1, s1, t1 = cpu_ns(p.pid), switches(p.pid), time.monotonic()
    out, _ = p.communicate(timeout=secs + 30)
    return c1 - c0, s1 - s0, t1 - t0, out


def main():
    if sys.argv[1] == "--table":
        out_dir = sys.argv[2]
        with open(os.path.join(out_dir, "samples.csv")) as f:
            next(f)
            names = list(dict.fromkeys(line.split(",")[0] for line in f))
        return table(out_dir, names)
    out_dir = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    gens = [a.split("=", 1) for a in sys.argv[3:]] or [["ringbench", "target/release/ringbench"]]
    rate = int(os.environ.get("RATE", "2000"))
    secs = int(os.environ.get("SECS", "10"))
    latency = os.environ.get("LATENCY", "fixed:4ms")
    wrk_conns = os.environ.get("WRK_CONNS", "8").split(",")
    gen_cpu = os.environ.get("GEN_CPU", "0")
    stub_cpu = os.environ.get("STUB_CPU", "1")
    os.makedirs(out_dir, exist_ok=True)
    port = free_port()
    stub_bin = next(p for n, p in gens if not n.startswith("uring"))
    stub = subprocess.Popen(
        [stub_bin, "upstream", "--listen", f"127.0.0.1:{port}", "--cpus", stub_cpu,
         "--latency", latency],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    url = f"http://127.0.0.1:{port}/"
    rows = []
    try:
        for rep in range(1, reps + 1):
            order = gens + [[f"wrk-c{c}", c] for c in wrk_conns]
            if rep % 2 == 0:
                order = order[::-1]
            for name, path in order:
                if name.startswith("wrk"):
                    cmd = ["taskset", "-c", gen_cpu, "wrk", "-t1", f"-c{path}", f"-d{secs}s", url]
                elif name.startswith("uring"):
                    cmd = ["taskset", "-c", gen_cpu, path, f"127.0.0.1:{port}", str(rate),
                           str(secs)]
                else:
                    js = os.path.join(out_dir, f"{name}-{rep}.json")
                    # The measured window starts at 1 s (warmup); the sample at 2 s is inside it.
                    cmd = [path, "run", "--url", url, "--rate", str(rate), "--duration",
                           f"{secs - 1}s", "--warmup", "1s", "--cpus", gen_cpu, "--json", js,
                           "--quiet"]
                cpu, sw, span, out = sample(cmd, secs)
                if name.startswith("wrk"):
                    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
                    rps = float(m.group(1)) if m else float("nan")
                    verdict = "-"
                elif name.startswith("uring"):
                    # "driver io_uring sent N completed M": a fixed schedule, so req/s = RATE
                    # when all completed.
                    m = re.search(r"driver (\S+) sent (\d+) completed (\d+)", out)
                    rps = rate * int(m.group(3)) / max(1, int(m.group(2))) if m else float("nan")
                    verdict = m.group(1) if m else "failed"
                else:
                    rep_json = json.load(open(js))
                    rps = rep_json["rates"]["achieved"]
                    verdict = rep_json["verdict"]
                us = cpu / 1e3 / (rps * span)
                wakes = sw / (rps * span)
                rows.append((name, rep, rps, cpu / 1e9, span, us, wakes, verdict))
                print(f"{name:>12} rep {rep}: {rps:8.1f} req/s  cpu {cpu/1e9:.3f}s over "
                      f"{span:.2f}s  {us:6.2f} us/req  {wakes:.2f} switches/req  {verdict}",
                      flush=True)
    finally:
        stub.terminate()
        stub.wait()
    with open(os.path.join(out_dir, "samples.csv"), "w") as f:
        f.write("generator,rep,req_per_s,cpu_s,span_s,us_per_req,switches_per_req,verdict\n")
        for r in rows:
            f.write(",".join(str(x) for x in r) + "\n")
    ref = f"wrk-c{wrk_conns[0]}"
    table(out_dir, [g[0] for g in gens] + [f"wrk-c{c}" for c in wrk_conns])


def stall_ms(out_dir, name, rep):
    try:
        with open(os.path.join(out_dir, f"{name}-{rep}.json")) as f:
            return json.load(f)["latency"]["schedule_lag"]["max_ns"] / 1e6
    except OSError:
        return None


def table(out_dir, names):
    limit = float(os.environ.get("STALL_MS", "100"))
    rows = []
    with open(os.path.join(out_dir, "samples.csv")) as f:
        next(f)
        for line in f:
            c = line.strip().split(",")
            stall = stall_ms(out_dir, c[0], c[1])
            if stall is not None and stall >= limit:
                print(f"left out: {c[0]} rep {c[1]} (schedule lag max {stall:.0f} ms, "
                      f"{float(c[5]):.1f} us/req)")
                continue
            rows.append((c[0], int(c[1]), float(c[2]), float(c[3]), float(c[4]), float(c[5]),
                         float(c[6]), c[7]))
    ref = next(n for n in names if n.startswith("wrk"))
    wrk_med = statistics.median(r[5] for r in rows if r[0] == ref)
    print()
    print(f"| generator | req/s (median) | CPU us/request: median | range | vs {ref} | "
          "context switches per request (median) |")
    print("|---|---|---|---|---|---|")
    for name in names:
        us = [r[5] for r in rows if r[0] == name]
        rps = statistics.median(r[2] for r in rows if r[0] == name)
        med = statistics.median(us)
        wk = statistics.median(r[6] for r in rows if r[0] == name)
        print(f"| {name} | {rps:.0f} | {med:.1f} | {min(us):.1f}-{max(us):.1f} ({len(us)} runs) | "
              f"{med / wrk_med:.2f}x | {wk:.2f} |")


if __name__ == "__main__":
    main()
