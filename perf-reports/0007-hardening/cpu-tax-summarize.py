#!/usr/bin/env python3
"""Summarize cpu-tax.sh's output: per rate, ringgate's CPU per request over nginx's in the same
compare run (every run, valid or not, listed with its verdict), then the medians of those ratios
for the binaries before and after."""
import glob, json, os, statistics, sys

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/cpu-tax"
rows = {}  # (side, rate) -> list of ratios
print("| run | rate | ringgate us/req | nginx us/req | ratio | ringgate p50 / p99 | verdicts (ringgate; nginx) |")
print("|---|---|---|---|---|---|---|")
for d in sorted(glob.glob(os.path.join(out, "*-*/"))):
    name = os.path.basename(d.rstrip("/"))
    side = name.rsplit("-", 1)[0]
    for rate in ("5000", "20000"):
        def runs(target):
            return [json.load(open(f)) for f in sorted(glob.glob(f"{d}runs/{target}-{rate}-r*.json"))]
        rg, ng = runs("ringgate"), runs("nginx")
        if not rg or not ng:
            continue
        cpu = lambda rs: statistics.median(r["target_cpu"]["us_per_success"] for r in rs)
        lat = lambda rs, q: statistics.median(r["latency"]["response"][q] for r in rs) / 1000
        ratio = cpu(rg) / cpu(ng)
        rows.setdefault((side, rate), []).append(ratio)
        verdicts = ",".join(r["verdict"] for r in rg) + "; " + ",".join(r["verdict"] for r in ng)
        print(f"| {name} | {rate} | {cpu(rg):.1f} | {cpu(ng):.1f} | {ratio:.3f} | "
              f"{lat(rg, 'p50_ns'):.0f} us / {lat(rg, 'p99_ns'):.0f} us | {verdicts} |")
print()
print("| binary | rate | ringgate / nginx, per round | median |")
print("|---|---|---|---|")
for (side, rate), rs in sorted(rows.items()):
    print(f"| {side} | {rate} | {' / '.join(f'{r:.3f}' for r in rs)} | **{statistics.median(rs):.3f}** |")
