// The Node.js entry of every Kappa WASM action (kind nodejs:20): `exports.main` runs the
// activation in the WebAssembly module, which dispatches on the action's name
// (`__OW_ACTION_NAME`, e.g. /guest/kappa/process) to the same handlers as the native actions.
// The module is instantiated and the connections are opened once per container.
'use strict';

const { run } = require('./kappa_wasm.js');
const { ioFor } = require('./io.js');

// What the module reads from the environment (OpenWhisk sets the __OW_* per activation).
const ENV = [
  '__OW_ACTION_NAME', '__OW_ACTIVATION_ID', '__OW_DEADLINE', '__OW_API_KEY', '__OW_API_HOST',
  'KAFKA_BROKERS', 'REDIS_URL', 'KAPPA_API_KEYS', 'KAPPA_CONFIG', 'KAPPA_LINK',
];

async function main(params) {
  const env = {};
  for (const k of ENV) if (process.env[k] !== undefined) env[k] = process.env[k];
  return run(params || {}, env, ioFor(params || {}));
}

exports.main = main;
