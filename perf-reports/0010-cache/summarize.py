#!/usr/bin/env python3
"""Medians and spread of cpu-per-hit.sh results: CPU per hit and latency per target and rate,
and each peer's CPU per hit over ringgate's, paired by repetition (the runs took turns)."""
import csv, statistics, sys
from collections import defaultdict

rows = list(csv.DictReader(open(sys.argv[1])))
by = defaultdict(list)
for r in rows:
    by[(r["target"], int(r["rate"]))].append(r)
rates = sorted({k[1] for k in by})
targets = ["ringgate", "nginx", "varnish"]
print("| rate | target | CPU us/hit median (min-max) | p50 us | p99 us | runs valid |")
print("|---|---|---|---|---|---|")
for rate in rates:
    for t in targets:
        rs = by.get((t, rate), [])
        if not rs:
            continue
        cpu = [float(r["cpu_us_per_req"]) for r in rs]
        p50 = [float(r["p50_us"]) for r in rs]
        p99 = [float(r["p99_us"]) for r in rs]
        valid = sum(r["verdict"] == "valid" for r in rs)
        print(f"| {rate} | {t} | {statistics.median(cpu):.1f} ({min(cpu):.1f}-{max(cpu):.1f}) | "
              f"{statistics.median(p50):.0f} | {statistics.median(p99):.0f} | {valid}/{len(rs)} |")
print()
print("| rate | ringgate / nginx (median, min-max of paired runs) | ringgate / varnish |")
print("|---|---|---|")
for rate in rates:
    rg = {r["rep"]: float(r["cpu_us_per_req"]) for r in by.get(("ringgate", rate), [])}
    cells = []
    for peer in ["nginx", "varnish"]:
        pr = {r["rep"]: float(r["cpu_us_per_req"]) for r in by.get((peer, rate), [])}
        ratios = [rg[k] / pr[k] for k in rg if k in pr and pr[k] > 0]
        cells.append(f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "-")
    print(f"| {rate} | {cells[0]} | {cells[1]} |")
