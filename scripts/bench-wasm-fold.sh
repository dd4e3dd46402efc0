#!/usr/bin/env bash
# The fold in WebAssembly against the native fold, on the same records (issue #12's figure:
# "WASM fold >= 50% of native records/s"). Figures for BENCHMARKS.md; nothing is asserted on them.
#
#   scripts/bench-wasm-fold.sh [FILE]
#
# FILE holds newline-separated records (default .cache/bench/wasm-fold-100000.ndjson: made when
# missing by scripts/fetch-tweets.sh + kappa-tweetgen --count ${RECORDS:-100000}, the Twitter API's
# wire format). Both sides read it into memory and, for each query of
# actions/hosts/wasm/test/fold_bench_queries.json, fold every line with the same code
# (kappa_wasm::bench::Lines::fold: Plan::parse + one fold_all), best of 3 passes, one core:
#   native  actions/hosts/wasm/examples/fold_bench.rs (the workspace's release profile)
#   WASM    actions/hosts/wasm/test/fold_bench.mjs in Node.js, over the module of
#           `scripts/build-actions.sh wasm-module` (its FoldBench export)
#
# KAPPA_BENCH_WASM_VARIANTS lists the modules to measure, each SIMD-OPT-COREOPT-WASMOPT (default
# "simd-z-2-Oz", the shipped settings): SIMD is simd or nosimd (simd128 or not), OPT the cargo
# opt-level (z, s, 2, 3), COREOPT kappa-core's, WASMOPT wasm-opt's level (Oz, Os, O3, ...) or
# none. E.g. the settings before simd128 and the core's opt-level 2, and all of opt-level 3:
#   KAPPA_BENCH_WASM_VARIANTS="simd-z-2-Oz nosimd-z-z-Oz simd-z-z-Oz simd-3-3-Oz" scripts/bench-wasm-fold.sh
# The simd-z-2 build shares target/deploy-wasm with scripts/build-actions.sh; the others build in
# target/bench-wasm/<SIMD>-<OPT>-<COREOPT> (a full LTO build each, about a minute). FOLD_BENCH_PASSES,
# FOLD_BENCH_ONLY (e.g. Q1,Q3) pass through to both sides.
#
# Prints one JSON line per query and side, then a table: query, native records/s, WASM records/s
# and the ratio per variant, and the module's size. Fails if a side answers differently (matched
# count or SHA-1 of the rendered result).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
step() { printf '==> %s\n' "$*" >&2; }

file=${1:-$repo/.cache/bench/wasm-fold-${RECORDS:-100000}.ndjson}
file=$(realpath -m "$file")
variants=${KAPPA_BENCH_WASM_VARIANTS:-simd-z-2-Oz}
out="$repo/.cache/bench/wasm-fold"
mkdir -p "$out"

if [ ! -s "$file" ]; then
    step "records: $file"
    scripts/fetch-tweets.sh >&2
    mkdir -p "$(dirname "$file")"
    cargo run -q --release --locked -p kappa-tweetgen -- --count "${RECORDS:-100000}" >"$file.tmp"
    mv "$file.tmp" "$file"
fi

step "native: examples/fold_bench (release)"
cargo build -q --release --locked -p kappa-wasm --example fold_bench

modules=()
for v in $variants; do
    IFS=- read -r simd opt core wasm_opt <<<"$v"
    case "$simd" in simd) s=1 ;; nosimd) s=0 ;; *) echo "bad variant $v (SIMD: simd|nosimd)" >&2; exit 2 ;; esac
    [ -n "$opt" ] && [ -n "$core" ] && [ -n "$wasm_opt" ] || {
        echo "bad variant $v (SIMD-OPT-COREOPT-WASMOPT)" >&2
        exit 2
    }
    if [ "$simd-$opt-$core" = simd-z-2 ]; then
        target_dir="$repo/target/deploy-wasm"
    else
        target_dir="$repo/target/bench-wasm/$simd-$opt-$core"
    fi
    pass=1
    [ "$wasm_opt" = none ] && pass=0
    step "wasm module $v"
    KAPPA_WASM_SIMD=$s KAPPA_WASM_OPT=$opt KAPPA_WASM_CORE_OPT=$core KAPPA_WASM_OPT_FLAGS="-$wasm_opt" \
        KAPPA_WASM_OPT_PASS=$pass KAPPA_WASM_TARGET_DIR="$target_dir" \
        scripts/build-actions.sh wasm-module "$out/$v"
    modules+=("$v")
done

results="$out/results.jsonl"
: >"$results"
step "native fold: $file"
"$repo/target/release/examples/fold_bench" "$file" | tee -a "$results"
for v in "${modules[@]}"; do
    step "wasm fold ($v, $(node --version)): $file"
    node actions/hosts/wasm/test/fold_bench.mjs "$out/$v" "$file" "$v" | tee -a "$results"
done

printf '\n%s, %s, %s cores, load %s\n' "$(date -u +%FT%TZ)" "$(node --version)" "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
node - "$results" <<'JS'
const fs = require('node:fs');
const rows = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const native = rows.filter((r) => r.side === 'native');
const variants = [...new Set(rows.filter((r) => r.side !== 'native').map((r) => r.side))];
const n = native[0];
if (n) console.log(`${n.records} records, ${(n.bytes / 1e6).toFixed(1)} MB, best of ${process.env.FOLD_BENCH_PASSES || 3} passes each`);
const fmt = (x) => Math.round(x).toLocaleString('en-US');
let bad = 0;
for (const v of variants) {
  const size = rows.find((r) => r.side === v).module_bytes;
  console.log(`\nWASM ${v}: module ${size.toLocaleString('en-US')} bytes`);
  console.log(`${'query'.padEnd(6)} ${'native rec/s'.padStart(14)} ${'WASM rec/s'.padStart(14)} ${'ratio'.padStart(7)}  matched`);
  for (const nr of native) {
    const w = rows.find((r) => r.side === v && r.query === nr.query);
    if (!w) continue;
    const same = w.matched === nr.matched && w.result_sha1 === nr.result_sha1;
    if (!same) bad += 1;
    console.log(`${nr.query.padEnd(6)} ${fmt(nr.records_per_s).padStart(14)} ${fmt(w.records_per_s).padStart(14)} ${`${(100 * w.records_per_s / nr.records_per_s).toFixed(1)}%`.padStart(7)}  ${nr.matched}${same ? '' : ` DIFFERENT: wasm ${w.matched} ${w.result_sha1}`}`);
  }
}
if (bad) { console.error(`${bad} results differ between native and WASM`); process.exit(1); }
JS
