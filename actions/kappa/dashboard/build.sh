#!/usr/bin/env bash
# Build the dashboard into dist/ (committed; embedded in `kappa` by src/dashboard.rs):
# the WASM core (build-wasm.sh: cargo + wasm-bindgen), then the page (npm ci + esbuild).
set -euo pipefail
cd "$(dirname "$0")"
./build-wasm.sh
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
node build.mjs
ls -l dist
