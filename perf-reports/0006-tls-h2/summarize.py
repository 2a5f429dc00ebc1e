"""Summarizes perf-reports/0006-tls-h2 runs: CPU per 200 response of each proxy per mix,
medians with the spread over repetitions, and the ringgate/nginx ratio of the medians."""
import glob, json, os, re, statistics as st, sys

out = sys.argv[1]
rows = {}
for f in sorted(glob.glob(os.path.join(out, "runs", "*"))):
    base = os.path.basename(f)
    mix, name, rep = base.rsplit(".", 1)[0].split("-")
    rec = None
    if f.endswith(".json"):
        r = json.load(open(f))
        t = r.get("target_cpu") or {}
        g = r.get("generator", {})
        rec = {
            "valid": r["verdict"] == "valid",
            "verdict": r["verdict"],
            "cpu_us": t.get("us_per_success"),
            "ok": r["counts"]["success"],
            "errors": r["counts"]["errors"] + r["counts"]["timeouts"],
            "p50": r["latency"]["response"]["p50_ns"] / 1e3,
            "p99": r["latency"]["response"]["p99_ns"] / 1e3,
            "handshakes": g.get("tls_handshakes"),
            "resumed": g.get("tls_resumed"),
        }
    else:
        text = open(f).read()
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
        s2 = re.search(r"status codes: (\d+) 2xx", text)
        c = re.search(r"cpu_ticks (\d+) hz (\d+)", text)
        mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", text)
        if m and s2 and c:
            ok = int(s2.group(1))
            ticks, hz = int(c.group(1)), int(c.group(2))
            rec = {
                # A timed h2load run ends with its requests in flight counted as failed.
                "valid": ok > 0 and ok >= 0.99 * int(m.group(3)),
                "verdict": "valid" if ok else "no-responses",
                "cpu_us": ticks / hz * 1e6 / ok if ok else None,
                "ok": ok,
                "errors": int(m.group(5)) + int(m.group(6)),
                "p50": None, "p99": None,
                "mean": mean.group(1) if mean else "-",
            }
    if rec:
        rows.setdefault((mix, name), []).append(rec)

mixes = ["ka", "resume", "full", "h2", "h2c"]
lines = ["| mix | proxy | valid runs | CPU µs per 200 median (min..max) | p50 µs | p99 µs | answered 200 | errors | handshakes (resumed) |",
         "|---|---|---|---|---|---|---|---|---|"]
med = {}
for mix in mixes:
    for name in ["ringgate", "nginx"]:
        rs = rows.get((mix, name), [])
        ok = [r for r in rs if r["valid"] and r["cpu_us"]]
        if not rs:
            continue
        if not ok:
            lines.append(f"| {mix} | {name} | 0 | - | - | - | - | - | {', '.join(r['verdict'] for r in rs)} |")
            continue
        cpu = [r["cpu_us"] for r in ok]
        med[(mix, name)] = st.median(cpu)
        p50 = [r["p50"] for r in ok if r["p50"] is not None]
        p99 = [r["p99"] for r in ok if r["p99"] is not None]
        hs = sum(r.get("handshakes") or 0 for r in ok)
        rsm = sum(r.get("resumed") or 0 for r in ok)
        lines.append(
            f"| {mix} | {name} | {len(ok)}/{len(rs)} | {st.median(cpu):.1f} ({min(cpu):.1f}..{max(cpu):.1f}) | "
            f"{st.median(p50):.0f} | {st.median(p99):.0f} | {sum(r['ok'] for r in ok)} | {sum(r['errors'] for r in ok)} | "
            f"{hs} ({rsm}) |" if p50 else
            f"| {mix} | {name} | {len(ok)}/{len(rs)} | {st.median(cpu):.1f} ({min(cpu):.1f}..{max(cpu):.1f}) | - | - | "
            f"{sum(r['ok'] for r in ok)} | {sum(r['errors'] for r in ok)} | - |")
lines.append("")
for mix in mixes:
    if (mix, "ringgate") in med and (mix, "nginx") in med:
        lines.append(f"- {mix}: ringgate / nginx CPU per request **{med[(mix, 'ringgate')] / med[(mix, 'nginx')]:.2f}x**")
print("\n".join(lines))
