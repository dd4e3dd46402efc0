// The WASM host's adapters held to the ports' conformance suites, inside the module, against
// real Kafka and Redis: the log suite over kafkajs (JsLog) and the state store suite over
// node-redis (kappa-state-redis's store with the JavaScript transport). The same suites the
// native adapters pass (kappa_core::conformance_log, kappa_core::conformance).
//
//   scripts/build-actions.sh wasm && scripts/build-actions.sh wasm-conformance &&
//   eval "$(scripts/services.sh up)" && node actions/hosts/wasm/test/conformance.mjs
//
// Uses the io.js the zips bundle, from build/wasm-deps (with its node_modules), and the test
// module build/wasm-conformance. A failed property prints "conformance: panicked at …" and
// the module traps. Prints a closing "N passed, N failed" line.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
const { KAFKA_BROKERS, REDIS_URL } = process.env;
if (!KAFKA_BROKERS || !REDIS_URL) {
  console.log('wasm conformance: skipped (KAFKA_BROKERS / REDIS_URL not set)');
  console.log('0 passed, 0 failed');
  process.exit(0);
}
const require = createRequire(import.meta.url);
const moduleDir = path.join(repo, 'build/wasm-conformance');
const ioPath = path.join(repo, 'build/wasm-deps/io.js');
for (const needed of [path.join(moduleDir, 'kappa_wasm.js'), ioPath]) {
  if (!fs.existsSync(needed)) {
    console.error(`missing ${needed}: run scripts/build-actions.sh wasm and wasm-conformance`);
    process.exit(1);
  }
}
const wasm = require(path.join(moduleDir, 'kappa_wasm.js'));
const { Io } = require(ioPath);

const run = `${process.pid}-${Date.now()}`;
let passed = 0;
let failed = 0;
async function suite(name, body) {
  const io = new Io(KAFKA_BROKERS, REDIS_URL);
  const t0 = performance.now();
  try {
    await body(io);
    passed += 1;
    console.log(`ok   ${name} (${Math.round(performance.now() - t0)} ms)`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  } finally {
    await io.close();
  }
}

await suite('log conformance over kafkajs (JsLog)', (io) =>
  wasm.logConformance(io, `wasmconf-${run}`));
await suite('state store conformance over node-redis (RedisStore<JsRedis>)', async (io) => {
  const prefix = `wasmconf-${run}`;
  await wasm.stateConformance(io, prefix);
  // The suite removes its queries; the views hash is the one key it leaves.
  await io.redis(['DEL', `${prefix}:views`]);
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
