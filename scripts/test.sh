#!/usr/bin/env bash
# The README's test command. Installs what the tests need, then runs format, lint, the whole test
# suite on io_uring and again on the epoll driver, and a bounded fuzz run of the HTTP parser.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v curl >/dev/null || need_apt+=(curl)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v h2load >/dev/null || need_apt+=(nghttp2-client)
# The rate-limit tests start their own redis-server on a free port.
command -v redis-server >/dev/null || need_apt+=(redis-server)
# The etcd discovery and fleet-config tests start their own etcd on free ports.
command -v etcd >/dev/null || need_apt+=(etcd-server)
# The compare and tax-peer tests run nginx and HAProxy (2.5 or later: JWT) on generated configs.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The metrics test checks /metrics with the reference Prometheus text parser; the auth tests make
# their keys with `cryptography` and cross-check tokens signed by PyJWT; the gRPC tests run a
# grpcio client and server; the HTTP/2 tests drive h2load.
if ! python3 -c 'import prometheus_client, jwt, cryptography, grpc' 2>/dev/null; then
  echo "== installing: prometheus-client, pyjwt, cryptography, grpcio (PyPI)"
  python3 -m pip install --quiet --disable-pip-version-check prometheus-client pyjwt cryptography grpcio
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== tests (io_uring where the host allows it)"
cargo test --workspace
echo "== tests again on the epoll driver"
MONOIO_FORCE_LEGACY_DRIVER=1 cargo test --workspace
echo "== the allocation-counting build (ringgate --features count-alloc): clippy and its counter test"
cargo clippy -p ringgate --features count-alloc --all-targets -- -D warnings
cargo test -p ringgate --features count-alloc --bin ringgate count_alloc
echo "== bounded fuzz runs of the HTTP/1.1 request framing parser (20 s) and path normalization (10 s)"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
(
  cd http/fuzz
  mkdir -p corpus/request_framing
  # -s none: stable Rust has no AddressSanitizer; the codec has no unsafe code for it to watch.
  cargo fuzz run -s none request_framing corpus/request_framing seeds/request_framing \
    -- -max_total_time=20 -dict=request_framing.dict 2>&1 | tail -n 3
  mkdir -p corpus/path_normalization
  cargo fuzz run -s none path_normalization corpus/path_normalization seeds/path_normalization \
    -- -max_total_time=10 2>&1 | tail -n 3
)
echo "== all checks passed"
