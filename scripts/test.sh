#!/usr/bin/env bash
# Run every test of Kappa on this machine, installing what is missing.
#
#   scripts/test.sh            # everything: lint, unit/property/golden tests, WASM build,
#                              # bounded fuzzing, and the integration tier against real
#                              # Kafka + Redis started on loopback by scripts/services.sh,
#                              # with the differential suite against a real OpenSearch
#   KAPPA_SKIP_SERVICES=1 scripts/test.sh   # only the tier that needs no services
#
# Environment: FUZZ_CASES (default 20000) bounds the fuzz run. KAPPA_SHARED (default ../shared
# beside the repository) holds OpenWhisk's vendored sources: wskdeploy, the ActionLoop proxy and
# the nodejs:20 runtime are built from it (scripts/openwhisk-tools.sh); without it the run fails.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
step() { printf '\n==> %s\n' "$*" >&2; }

step "toolchain and build prerequisites"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown >/dev/null
# rdkafka builds its bundled librdkafka with TLS (OpenSSL) and zlib; Kafka and OpenSearch come
# from Maven Central through maven, and OpenSearch's launcher is compiled with javac (Java 17).
need=()
for pkg in libssl-dev pkg-config zlib1g-dev build-essential zip unzip curl maven \
  openjdk-17-jdk-headless; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi

step "real tweets for test data"
scripts/fetch-tweets.sh >&2

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "the core builds for wasm32-unknown-unknown"
cargo build -p kappa-core --target wasm32-unknown-unknown --locked

services_started=0
cleanup() {
  if [ "$services_started" = 1 ]; then
    scripts/services.sh down >&2 || true
  fi
}
trap cleanup EXIT
if [ "${KAPPA_SKIP_SERVICES:-0}" != 1 ]; then
  step "real Kafka, Redis and OpenSearch on loopback"
  eval "$(scripts/services.sh up)"
  services_started=1
  # The full tier runs the differential suite: no OpenSearch is a failure here, not a skip.
  : "${OPENSEARCH_URL:?scripts/services.sh up did not start OpenSearch}"
  export KAFKA_BROKERS REDIS_URL OPENSEARCH_URL
fi

step "OpenWhisk's real parts: wskdeploy, the ActionLoop proxy, the nodejs:20 runtime, Serverless v3"
# From the vendored sources in KAPPA_SHARED (default ../shared) and the npm registry; cached.
# (Assigned first: a failure inside `eval "$(...)"` would not stop the script.)
tools_env=$(scripts/openwhisk-tools.sh env)
eval "$tools_env"
# The tests that use them fail, instead of skipping, when one is missing.
export KAPPA_REQUIRE_REAL_RUNTIMES=1

step "action zips (native rust:1.34 and WASM nodejs:20) for the real runtimes"
scripts/build-actions.sh >&2
# The WASM host's adapters run the ports' conformance suites inside a test module.
scripts/build-actions.sh wasm-conformance >&2
# The WASM test compares with the native exec (the debug build of the same binary).
export KAPPA_NATIVE_EXEC="$repo/target/debug/kappa-action"

step "tests"
# One test at a time within each binary: the integration tier restarts Kafka and Redis.
cargo test --workspace --locked -- --test-threads=1

step "fuzz: arbitrary JSON into the query parser and engine (${FUZZ_CASES:-20000} cases)"
PROPTEST_CASES="${FUZZ_CASES:-20000}" cargo test -p kappa-core --test bad_requests --locked \
  arbitrary_json_never_panics

step "dashboard: page logic through the WASM core, and headless Chromium against kappa dev"
scripts/test-dashboard.sh

step "all tests passed"
