// One warm nodejs:20 container of the platform harness (tests/deploy/src/platform.rs).
//
//   node nodejs-runner.js ACTION_DIR     (fd 3: where results go)
//
// Does for one unzipped action what OpenWhisk's nodejs runtime does: `require` the directory
// (package.json `main`), then for each activation — the invoker's /run message, one JSON line on
// stdin — set the `__OW_*` variables from the message's fields (`__OW_ACTION_NAME`,
// `__OW_ACTIVATION_ID`, `__OW_DEADLINE`, `__OW_API_KEY`, ...) and `await main(value)`. A result
// that is not an object, or a thrown error, becomes `{"error": ...}`. One result line on fd 3.
'use strict';

const fs = require('node:fs');
const readline = require('node:readline');

const dir = process.argv[2];
const action = require(dir);

function reply(result) {
  fs.writeSync(3, `${JSON.stringify(result)}\n`);
}

(async () => {
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    let message;
    try {
      message = JSON.parse(line);
    } catch (e) {
      reply({ error: `activation is not JSON: ${e.message}` });
      continue;
    }
    for (const [key, value] of Object.entries(message)) {
      if (key !== 'value') process.env[`__OW_${key.toUpperCase()}`] = String(value);
    }
    try {
      const result = await action.main(message.value || {});
      reply(result !== null && typeof result === 'object' ? result : { error: 'The action did not return a dictionary.' });
    } catch (e) {
      reply({ error: `An error has occurred: ${e && e.message ? e.message : e}` });
    }
  }
})();
