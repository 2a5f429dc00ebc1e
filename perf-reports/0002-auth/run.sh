#!/usr/bin/env bash
# Report 0002: CPU per request of the auth filter vs passthrough, at the same offered load.
#  1. warm: every request carries the same valid RS256 JWT (verified once, then cache hits);
#  2. mixed: 70% valid JWTs (a pool of 50 distinct tokens), 10% a valid API key, 10% expired
#     JWTs (401), 10% anonymous (401), per the scenario in setup/mixed.toml.
# Keys and tokens are made fresh (Python `cryptography` + PyJWT, and `ringgate keys create`).
# usage: perf-reports/0002-auth/run.sh   (needs release builds; ~6 minutes)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=perf-reports/0002-auth
setup=$(pwd)/$out/setup
mkdir -p "$setup"
python3 - "$setup" <<'PY'
import sys, json, time, jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import RSAAlgorithm
d = sys.argv[1]
k = rsa.generate_private_key(65537, 2048)
pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
jwk = json.loads(RSAAlgorithm.to_jwk(k.public_key())); jwk.update({"kid": "k1", "alg": "RS256"})
open(f"{d}/jwks.json", "w").write(json.dumps({"keys": [jwk]}))
now = int(time.time())
def tok(sub, exp):
    return jwt.encode({"sub": sub, "iss": "https://idp.bench", "aud": "api", "exp": exp, "scope": "read",
                       "client_id": "bench"}, pem, algorithm="RS256", headers={"kid": "k1"})
open(f"{d}/valid.txt", "w").write("\n".join(tok(f"user-{i}", now + 86400) for i in range(50)) + "\n")
open(f"{d}/expired.txt", "w").write("\n".join(tok(f"old-{i}", now - 3600) for i in range(10)) + "\n")
open(f"{d}/one.txt", "w").write(tok("warm-user", now + 86400) + "\n")
PY
target/release/ringgate keys create --client-id bench --scopes read 2>/dev/null > "$setup/apikey.out"
head -1 "$setup/apikey.out" > "$setup/apikeys.txt"
tail -n +2 "$setup/apikey.out" > "$setup/keys.toml"
for variant in passthrough auth; do
  {
    echo "version = \"$variant\""
    echo '[[listeners]]'
    echo 'address = "@LISTEN@"'
    echo '[observability]'
    echo 'metrics = false'
    echo 'request_ids = false'
    if [ $variant = auth ]; then
      echo '[auth]'
      echo "api_keys_file = \"$setup/keys.toml\""
      echo "jwks_file = \"$setup/jwks.json\""
      echo '[auth.jwt]'
      echo 'issuers = ["https://idp.bench"]'
      echo 'audiences = ["api"]'
    fi
    echo '[[upstreams]]'
    echo 'name = "up"'
    echo 'endpoints = ["@UPSTREAM@"]'
    echo '[[routes]]'
    echo 'id = "api"'
    echo 'path = { prefix = "/" }'
    echo 'upstream = "up"'
    if [ $variant = auth ]; then echo 'auth = { mode = "required", scopes_any = ["read"] }'; fi
  } > "$setup/$variant.toml"
done
cat > "$setup/warm.toml" <<TOML
[[requests]]
name = "valid jwt (same token)"
weight = 1
method = "GET"
path = "/api/items"
headers = { authorization = "Bearer \${jwt}" }
[pools]
jwt = { file = "$setup/one.txt" }
TOML
cat > "$setup/mixed.toml" <<TOML
[[requests]]
name = "valid jwt"
weight = 7
method = "GET"
path = "/api/items"
headers = { authorization = "Bearer \${jwt_valid}" }
[[requests]]
name = "api key"
weight = 1
method = "GET"
path = "/api/items"
headers = { x-api-key = "\${apikey}" }
[[requests]]
name = "expired jwt"
weight = 1
method = "GET"
path = "/api/items"
headers = { authorization = "Bearer \${jwt_expired}" }
[[requests]]
name = "anonymous"
weight = 1
method = "GET"
path = "/api/items"
[pools]
jwt_valid = { file = "$setup/valid.txt" }
jwt_expired = { file = "$setup/expired.txt" }
apikey = { file = "$setup/apikeys.txt" }
TOML
RUN_ARGS="--scenario $setup/warm.toml" scripts/ab-compare.sh "$out/warm" 10000 7 10s \
  passthrough="$setup/passthrough.toml" auth="$setup/auth.toml"
RUN_ARGS="--scenario $setup/mixed.toml" scripts/ab-compare.sh "$out/mixed" 10000 5 10s \
  passthrough="$setup/passthrough.toml" auth="$setup/auth.toml"
