#!/usr/bin/env python3
"""Report 0001: CPU per request and added latency of a plain reverse proxy hop.

ringgate, nginx and HAProxy each proxy to the same ringbench stub upstream (64-byte bodies,
upstream keep-alive on), one worker each pinned on CPU 1; the stub and the open-model load
generator (ringbench run) share CPU 0. For each offered rate the targets run in interleaved order
(direct, ringgate, nginx, haproxy, direct, ...) for --reps repetitions, and the report gives
medians and spread (min..max) of the CPU microseconds each proxy spent per successful request and
of its latency, with ratios against nginx and latency added over the direct path.

Reproduce (from the repository root, on an otherwise idle machine):
    python3 perf-reports/0001-passthrough/run.py --reps 5 --duration 10s --rates 5000,20000
It builds the release binaries, needs nginx and haproxy on PATH (apt-get install nginx haproxy),
starts and stops every process it uses by PID, and writes raw/*.json and summary.md here.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.path.join(ROOT, "target", "release")
UP_PORT, RG_PORT, NGX_PORT, HAP_PORT = 19101, 19102, 19103, 19104
PROXY_CPU, LOAD_CPU = "1", "0"


def wait_port(port, timeout=10.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open")


def children(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]
    except OSError:
        return []


def start(cmd, port, tmp, name):
    log = open(os.path.join(tmp, name + ".log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_port(port)
    return p


def nginx_conf(tmp):
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
worker_cpu_affinity {'1' + '0' * int(PROXY_CPU)};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  upstream up {{ server 127.0.0.1:{UP_PORT}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{NGX_PORT} reuseport backlog=4096;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $host;
    }}
  }}
}}
""")
    return conf


def haproxy_conf(tmp):
    conf = os.path.join(tmp, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(f"""global
  nbthread 1
  cpu-map 1/1 {PROXY_CPU}
  maxconn 8000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option forwardfor
  http-reuse always
frontend fe
  bind 127.0.0.1:{HAP_PORT}
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  default_backend be
backend be
  server s1 127.0.0.1:{UP_PORT}
""")
    return conf


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--warmup", default="2s")
    ap.add_argument("--rates", default="5000,20000")
    ap.add_argument("--no-build", action="store_true")
    args = ap.parse_args()
    for tool in ("nginx", "haproxy", "taskset"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is needed (apt-get install {tool})")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "ringgate", "-p", "ringbench"], cwd=ROOT, check=True)
    raw_dir = os.path.join(HERE, "raw")
    os.makedirs(raw_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="ringgate-0001-")
    procs = {}
    try:
        procs["upstream"] = start(
            [f"{BIN}/ringbench", "upstream", "--listen", f"127.0.0.1:{UP_PORT}", "--workers", "1",
             "--cpus", LOAD_CPU, "--body-bytes", "64"], UP_PORT, tmp, "upstream")
        prof = os.path.join(tmp, "profile.toml")
        with open(prof, "w") as f:
            f.write(f"[workers]\ncpus = [{PROXY_CPU}]\n")
        procs["ringgate"] = start(
            [f"{BIN}/ringgate", "proxy", "--listen", f"127.0.0.1:{RG_PORT}", "--to",
             f"127.0.0.1:{UP_PORT}", "--profile", prof], RG_PORT, tmp, "ringgate")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        procs["nginx"] = start([nginx, "-c", nginx_conf(tmp)], NGX_PORT, tmp, "nginx")
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        procs["haproxy"] = start([haproxy, "-f", haproxy_conf(tmp)], HAP_PORT, tmp, "haproxy")
        time.sleep(0.5)
        with open(os.path.join(tmp, "ringgate.log")) as f:
            start_line = f.readline().strip()
        targets = [
            ("direct", UP_PORT, [procs["upstream"].pid]),
            ("ringgate", RG_PORT, [procs["ringgate"].pid]),
            ("nginx", NGX_PORT, [procs["nginx"].pid] + children(procs["nginx"].pid)),
            ("haproxy", HAP_PORT, [procs["haproxy"].pid]),
        ]
        results = []
        for rate in [int(r) for r in args.rates.split(",")]:
            for rep in range(args.reps):
                for name, port, pids in targets:
                    out = os.path.join(raw_dir, f"{rate}-{name}-{rep}.json")
                    cmd = [f"{BIN}/ringbench", "run", "--url", f"http://127.0.0.1:{port}/",
                           "--rate", str(rate), "--duration", args.duration, "--warmup", args.warmup,
                           "--cpus", LOAD_CPU, "--conns", "32", "--json", out, "--quiet",
                           "--target-pid", *[str(p) for p in pids]]
                    subprocess.run(cmd)
                    with open(out) as f:
                        d = json.load(f)
                    r = {
                        "rate": rate, "rep": rep, "target": name, "verdict": d["verdict"],
                        "achieved": d["rates"]["success"],
                        "errors": d["counts"]["errors"] + d["counts"]["timeouts"] + d["counts"]["censored"],
                        "cpu_us": d["target_cpu"]["us_per_success"],
                        "p50_us": d["latency"]["response"]["p50_ns"] / 1000,
                        "p99_us": d["latency"]["response"]["p99_ns"] / 1000,
                    }
                    results.append(r)
                    print(json.dumps(r), flush=True)
        write_summary(results, args, start_line)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def med_spread(vals):
    return statistics.median(vals), min(vals), max(vals)


def write_summary(results, args, start_line):
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    lines = [
        "# 0001 passthrough: ringgate vs nginx vs HAProxy, one proxy core",
        "",
        f"Command: `python3 perf-reports/0001-passthrough/run.py --reps {args.reps} --duration {args.duration} --rates {args.rates}`",
        "",
        f"ringgate start line: `{start_line}`",
        "",
        "Setup: each proxy runs one worker pinned on CPU 1; the ringbench stub upstream (64-byte body,",
        "keep-alive) and the ringbench open-model generator (fixed arrivals, 32 pre-opened",
        f"connections, warmup {args.warmup}) share CPU 0. Targets interleave per repetition. CPU is the",
        "proxy process's utime+stime over the measured window divided by successful requests (for",
        "`direct`, the stub upstream's own cost). Each cell: median [min..max] over the repetitions.",
        "",
    ]
    rates = sorted({r["rate"] for r in results})
    for rate in rates:
        rows = [r for r in results if r["rate"] == rate]
        by = {}
        for r in rows:
            by.setdefault(r["target"], []).append(r)
        lines += [f"## {rate} req/s offered", "",
                  "| target | CPU us/request | vs nginx | p50 us | p99 us | p50 added vs direct | success/s | errors | verdicts |",
                  "|---|---|---|---|---|---|---|---|---|"]
        ngx_cpu = statistics.median([r["cpu_us"] for r in by.get("nginx", [])]) if "nginx" in by else None
        direct_p50 = statistics.median([r["p50_us"] for r in by.get("direct", [])]) if "direct" in by else None
        for name in ["direct", "ringgate", "nginx", "haproxy"]:
            if name not in by:
                continue
            rs = by[name]
            cpu = med_spread([r["cpu_us"] for r in rs])
            p50 = med_spread([r["p50_us"] for r in rs])
            p99 = med_spread([r["p99_us"] for r in rs])
            ratio = f"{cpu[0] / ngx_cpu:.2f}x" if ngx_cpu and name != "direct" else ""
            added = f"{p50[0] - direct_p50:+.0f} us" if direct_p50 is not None and name != "direct" else ""
            verdicts = ",".join(sorted({r["verdict"] for r in rs}))
            lines.append(
                f"| {name} | {cpu[0]:.1f} [{cpu[1]:.1f}..{cpu[2]:.1f}] | {ratio} | {p50[0]:.0f} [{p50[1]:.0f}..{p50[2]:.0f}] | "
                f"{p99[0]:.0f} [{p99[1]:.0f}..{p99[2]:.0f}] | {added} | {statistics.median([r['achieved'] for r in rs]):.0f} | "
                f"{sum(r['errors'] for r in rs)} | {verdicts} |")
        lines.append("")
    with open(os.path.join(HERE, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
