#!/usr/bin/env python3
"""Tables of perf-reports/0012-own-ring/relay.sh's output folder: per rate and variant, the
median (and min-max) target CPU us per request over the valid runs, p50/p99, and the ratio to
monoio's relay and to nginx; then, when counted, per-request kernel work of each variant."""
import glob, json, os, statistics, sys

out = sys.argv[1]
runs = {}
for f in glob.glob(os.path.join(out, "*-r*.json")):
    name = os.path.basename(f)[:-5]
    variant, rate, rep = name.rsplit("-", 2)
    d = json.load(open(f))
    cpu = (d.get("target_cpu") or {}).get("us_per_success")
    runs.setdefault((int(rate), variant), []).append(
        (d["verdict"], cpu, d["latency"]["response"]["p50_ns"], d["latency"]["response"]["p99_ns"]))

def med(xs):
    return statistics.median(xs) if xs else float("nan")

for rate in sorted({r for r, _ in runs}):
    rows = {v: rs for (r, v), rs in runs.items() if r == rate}
    cpu = {}
    for v, rs in rows.items():
        valid = [x for x in rs if x[0] == "valid" and x[1]]
        use = valid or [x for x in rs if x[1]]
        cpu[v] = (med([x[1] for x in use]), min(x[1] for x in use), max(x[1] for x in use),
                  len(valid), len(rs), med([x[2] for x in use]) / 1e3, med([x[3] for x in use]) / 1e3)
    print(f"\n### {rate} req/s\n")
    print("| variant | valid | CPU us/req median (min-max) | / monoio relay | / nginx | p50 us | p99 us |")
    print("|---|---|---|---|---|---|---|")
    for v in sorted(cpu, key=lambda v: cpu[v][0]):
        m, lo, hi, nv, n, p50, p99 = cpu[v]
        rm = m / cpu["monoio"][0] if "monoio" in cpu else float("nan")
        rn = m / cpu["nginx"][0] if "nginx" in cpu else float("nan")
        print(f"| {v} | {nv}/{n} | {m:.1f} ({lo:.1f}-{hi:.1f}) | {rm:.2f} | {rn:.2f} | {p50:.0f} | {p99:.0f} |")

counted = sorted(glob.glob(os.path.join(out, "*-counts.perf")))
if counted:
    print("\n### Kernel work per request (2,000 req/s, 5 s + 1 s warmup counted)\n")
    print("| variant | SQEs | syscalls | io_uring_enter | poll arms | context switches |")
    print("|---|---|---|---|---|---|")
    for f in counted:
        v = os.path.basename(f)[: -len("-counts.perf")]
        d = json.load(open(os.path.join(out, f"{v}-counts.json")))
        sent = d["counts"]["success"] * 6 / 5
        c = {}
        for line in open(f):
            p = line.strip().split(",")
            if len(p) > 2 and p[0].replace(".", "").isdigit():
                c[p[2]] = float(p[0]) / max(sent, 1)
        g = lambda k: c.get(k, 0.0)
        print(f"| {v} | {g('io_uring:io_uring_submit_req'):.2f} | {g('raw_syscalls:sys_enter'):.2f} | "
              f"{g('syscalls:sys_enter_io_uring_enter'):.2f} | {g('io_uring:io_uring_poll_arm'):.2f} | "
              f"{g('context-switches'):.2f} |")
