//! The conformance suites of the log and state ports, run inside the module against the
//! JavaScript transports (kafkajs, node-redis) and real Kafka and Redis: the adapters the WASM
//! actions use are held to exactly what the native ones are.
//!
//! Built only with the `conformance` feature (test code stays out of the shipped module):
//! `scripts/build-actions.sh wasm-conformance`, run by `actions/hosts/wasm/test/conformance.mjs`.

use kappa_core::conformance::state_store_conformance;
use kappa_core::conformance_log::log_conformance;
use kappa_state_redis::{RedisStore, RedisStoreConfig};
use wasm_bindgen::prelude::*;

use crate::js::{JsLog, JsRedis, use_io};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(message: &str);
}

/// A failed property panics; with `panic = abort` the module then traps, so the message is
/// printed first.
fn report_panics() {
    std::panic::set_hook(Box::new(|info| console_error(&format!("conformance: {info}"))));
}

/// The log suite over the JavaScript Kafka client, on topics named `{prefix}-…`.
#[wasm_bindgen(js_name = logConformance)]
pub async fn log_conformance_js(io: JsValue, prefix: String) {
    report_panics();
    use_io(io);
    log_conformance(&JsLog, &prefix).await;
}

/// The state store suite over the JavaScript Redis client, on keys under `prefix`.
#[wasm_bindgen(js_name = stateConformance)]
pub async fn state_conformance_js(io: JsValue, prefix: String) -> Result<(), JsValue> {
    report_panics();
    use_io(io);
    let config = RedisStoreConfig { key_prefix: prefix, ring: 16 };
    let store = RedisStore::new(JsRedis, config).map_err(|e| JsValue::from_str(&e.to_string()))?;
    state_store_conformance(&store, "c-", 16).await;
    Ok(())
}
