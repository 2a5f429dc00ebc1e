# Medians per row of a jwt-verify.sh log (openssl figures turned into microseconds per verify).
import re, sys, statistics as st
text = open(sys.argv[1]).read()
rounds = text.split("=== round ")[1:]
rows = {}
def add(k, v): rows.setdefault(k, []).append(v)
for r in rounds:
    m = re.search(r"rsa 2048 bits\s+\S+\s+\S+\s+\S+\s+(\S+)", r)
    if m: add("openssl RSA-2048 verify", 1e6/float(m.group(1)))
    m = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+\S+\s+(\S+)", r)
    if m: add("openssl P-256 verify", 1e6/float(m.group(1)))
    for part, label in (("--- before", "before"), ("--- after", "after")):
        seg = r.split(part)[1].split("---")[0] if part in r else ""
        for name, val, unit in re.findall(r"jwt_verify/(\S+)\s+time:\s+\[\S+ \S+ (\S+) (\S+)", seg):
            v = float(val) * (1000 if unit == "ms" else 1)
            add(f"{label} {name}", v)
for k, v in rows.items():
    print(f"| {k} | " + " / ".join(f"{x:.1f}" for x in v) + f" | **{st.median(v):.1f}** |")
