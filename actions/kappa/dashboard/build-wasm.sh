#!/usr/bin/env bash
# Build Kappa's core for the browser (actions/web) into dashboard/dist/:
# kappa_web.js + kappa_web_bg.wasm (wasm-bindgen --target web). Needs wasm-bindgen-cli at the
# version of the wasm-bindgen crate (scripts/test-dashboard.sh installs it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cd "$repo"
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
# Own target dir and size-tuned profile: does not disturb the workspace's release builds.
# WASM SIMD (simd128) comes from the repository's .cargo/config.toml (kappa-web does not compile
# without it; RUSTFLAGS in the environment would replace it).
export CARGO_TARGET_DIR="$repo/target/web"
export CARGO_PROFILE_RELEASE_OPT_LEVEL=s CARGO_PROFILE_RELEASE_LTO=true \
       CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_DEBUG=0 \
       CARGO_PROFILE_RELEASE_PANIC=abort
cargo build -p kappa-web --target wasm32-unknown-unknown --release --locked
wasm-bindgen --target web --no-typescript --out-dir "$here/dist" \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/kappa_web.wasm"
ls -l "$here/dist"/kappa_web*
