// The WASM side of the WASM-vs-native fold benchmark (scripts/bench-wasm-fold.sh): loads a
// kappa_wasm module built by `scripts/build-actions.sh wasm-module DIR` (wasm-bindgen --target
// nodejs), copies the NDJSON file into it once (`new FoldBench(buffer)`), then for each query of
// fold_bench_queries.json times `fold(query)` over every record, best of 3 passes — the very
// code examples/fold_bench.rs runs natively.
//
//   node actions/hosts/wasm/test/fold_bench.mjs MODULE_DIR FILE [LABEL]
//
// Environment: FOLD_BENCH_PASSES (default 3), FOLD_BENCH_ONLY (e.g. Q1,Q3).
// Prints one JSON line per query, like the native side (plus the module's size and LABEL).
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const [dir, file, label = 'wasm'] = process.argv.slice(2);
if (!dir || !file) {
  console.error('usage: node fold_bench.mjs MODULE_DIR FILE [LABEL]');
  process.exit(2);
}
const here = path.dirname(fileURLToPath(import.meta.url));
const queries = JSON.parse(fs.readFileSync(path.join(here, 'fold_bench_queries.json'), 'utf8'));
const passes = Math.max(1, Number(process.env.FOLD_BENCH_PASSES || 3));
const only = (process.env.FOLD_BENCH_ONLY || '').split(',').filter(Boolean);

const moduleDir = path.resolve(dir);
const { FoldBench } = createRequire(path.join(moduleDir, 'package.json'))('./kappa_wasm.js');
const moduleBytes = fs.statSync(path.join(moduleDir, 'kappa_wasm_bg.wasm')).size;
const bench = new FoldBench(fs.readFileSync(file));
const records = bench.records();
for (const q of queries) {
  if (only.length && !only.includes(q.name)) continue;
  const body = JSON.stringify(q.body);
  let best = Infinity;
  for (let i = 0; i < passes; i += 1) {
    const t = performance.now();
    bench.fold(body);
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  const s = JSON.parse(bench.summary());
  console.log(JSON.stringify({
    side: label, query: q.name, records: s.records, bytes: bench.bytes(), best_s: best,
    records_per_s: Math.round(records / best), matched: s.matched, result_sha1: s.result_sha1,
    module_bytes: moduleBytes,
  }));
}
bench.free();
