#!/usr/bin/env bash
# Test the dashboard that `kappa dev` serves at /, installing what it needs:
#   - wasm-bindgen-cli at the version of the wasm-bindgen crate (cargo install, no --locked),
#     Node packages (npm ci: esbuild, uPlot, playwright-core), Debian's chromium;
#   - builds the core for the browser (actions/web → dashboard/dist/kappa_web_bg.wasm) and
#     the page bundle (esbuild → dashboard/dist/app.js, app.css), then `kappa` with them;
#   - unit tests of the page's logic through the WASM core (node:test);
#   - browser tests in headless Chromium against a real `kappa dev` (playwright-core), which
#     also write docs/dashboard.png and print the first-render figure;
#   - prints the page weight (gzip) including the WASM core.
# Called by scripts/test.sh; needs scripts/fetch-tweets.sh's base tweets (run here if missing).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
dash=actions/kappa/dashboard
step() { printf '\n==> %s\n' "$*" >&2; }

step "dashboard: tools"
want=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' actions/web/Cargo.toml)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$want" ]; then
  cargo install wasm-bindgen-cli --version "$want"
fi
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
scripts/fetch-tweets.sh >&2

step "dashboard: the WASM core and the page bundle"
(cd "$dash" && ./build-wasm.sh && npm ci --no-audit --no-fund && node build.mjs)
cargo build -p kappa --locked

step "dashboard: unit tests (page logic through the WASM core)"
(cd "$dash" && node --test test/unit/)

step "dashboard: browser tests (headless Chromium)"
(cd "$dash" && KAPPA_BIN="$repo/target/debug/kappa" SCREENSHOT="$repo/docs/dashboard.png" \
  node --test --test-concurrency=1 test/browser/)

step "dashboard: page weight"
total=0
for f in index.html app.js app.css kappa_web_bg.wasm; do
  raw=$(wc -c <"$dash/dist/$f"); gz=$(gzip -9 -c "$dash/dist/$f" | wc -c); total=$((total + gz))
  printf '%-20s %9d bytes, %8d gzip\n' "$f" "$raw" "$gz" >&2
done
printf 'page weight (gzip, incl. WASM core): %d bytes\n' "$total" >&2
