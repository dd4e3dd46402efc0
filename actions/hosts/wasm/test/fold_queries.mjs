// Folds records with queries inside a kappa_wasm module and prints each result's summary: the
// WASM half of tests/node.rs's native-vs-WASM comparisons (time zones come from Intl there).
//
//   node actions/hosts/wasm/test/fold_queries.mjs MODULE_DIR < {"records": "ndjson", "queries": [...]}
//
// Prints one JSON line per query: {"records","matched","result_sha1"} or {"error"}.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const [dir] = process.argv.slice(2);
if (!dir) {
  console.error('usage: node fold_queries.mjs MODULE_DIR < input.json');
  process.exit(2);
}
const moduleDir = path.resolve(dir);
const { FoldBench } = createRequire(path.join(moduleDir, 'package.json'))('./kappa_wasm.js');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const bench = new FoldBench(Buffer.from(input.records, 'utf8'));
for (const query of input.queries) {
  try {
    bench.fold(JSON.stringify(query));
    console.log(bench.summary());
  } catch (e) {
    console.log(JSON.stringify({ error: String(e) }));
  }
}
