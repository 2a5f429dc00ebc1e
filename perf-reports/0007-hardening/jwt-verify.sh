#!/bin/bash
# Side by side, 3 rounds: `openssl speed` RSA-2048 and P-256, then the jwt_verify bench built
# from main before this work (BEFORE) and from this branch (AFTER), each at nice -15 so the other
# builds on the machine disturb them less. Build the two bench binaries first, e.g.:
#   git archive aa81d43 | tar -x -C /tmp/before && (cd /tmp/before &&
#     cargo bench -p ringgate-policies --bench jwt_verify --no-run)   # prints the executable
#   cargo bench -p ringgate-policies --bench jwt_verify --no-run         # this tree
# then: BEFORE=<before executable> AFTER=<after executable> ./jwt-verify.sh > run.log
#       python3 jwt-verify-summarize.py run.log
: "${BEFORE:?path to the jwt_verify bench built before}" "${AFTER:?path to the one built after}"
for round in 1 2 3; do
  echo "=== round $round $(date -u +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n -15 openssl speed -seconds 2 rsa2048 ecdsap256 2>/dev/null | grep -E "^(rsa 2048|\s*256 bits ecdsa)"
  echo "--- before"
  nice -n -15 "$BEFORE" --bench 'jwt_verify/cold' --warm-up-time 1 --measurement-time 3 2>&1 | grep -E "^jwt_verify|time:"
  echo "--- after"
  nice -n -15 "$AFTER" --bench 'jwt_verify/(cold|precheck)' --warm-up-time 1 --measurement-time 3 2>&1 | grep -E "^jwt_verify|time:"
done
echo "=== done $(date -u +%T) load: $(cut -d' ' -f1-3 /proc/loadavg)"
