//! Kappa's actions as one WebAssembly module, for OpenWhisk platforms that run only Node.js.
//!
//! The module runs the same handlers as the native actions (`kappa-actions`), with the ports
//! implemented in Rust over a few JavaScript I/O primitives the Node.js entry supplies
//! (`js/io.js`): Kafka through kafkajs (partitions, watermarks, a fetch from an offset),
//! Redis through the `redis` client (one command at a time; the state logic is
//! `kappa-state-redis`'s Lua scripts, see [`store`]), HTTP through `fetch`, and a timer.
//! `js/index.js` exports `main(params)`: it reads the action's name from
//! `__OW_ACTION_NAME`, and the module dispatches on it like the native binary does.
//!
//! Build with `scripts/build-actions.sh` (cargo `--target wasm32-unknown-unknown`,
//! `wasm-bindgen --target nodejs`, one `build/actions/<action>-wasm.zip` per action).
//! Test with: `cargo test -p kappa-wasm` (the pure parts) and `actions/hosts/wasm/test/run.mjs`
//! (the zips against real Kafka and Redis; `scripts/test.sh` runs it).

pub mod bench;
pub mod frame;
pub mod settings;
pub mod store;

#[cfg(target_arch = "wasm32")]
pub mod js;

// Built with WASM SIMD (`-C target-feature=+simd128`, the repository's .cargo/config.toml):
// memchr and simdutf8 choose their simd128 code at compile time. RUSTFLAGS in the environment
// replaces the config's flags, so a build without it fails here instead of shipping a slower
// module; KAPPA_WASM_NO_SIMD=1 allows one (scripts/bench-wasm-fold.sh measures the difference).
#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
const _: () = assert!(
    option_env!("KAPPA_WASM_NO_SIMD").is_some(),
    "kappa-wasm is built with -C target-feature=+simd128 (.cargo/config.toml); is RUSTFLAGS set?"
);

/// The actions this module answers, by short name (the test of the manifests checks them).
pub const ACTIONS: [&str; 5] = ["query", "status", "process", "push", "tick"];

use kappa_actions::group;
use kappa_actions::push::{self, PushEvent};
use kappa_actions::web::WebResponse;
use kappa_actions::{ActionError, Env, query, status, tick};
use kappa_core::QueryId;
use serde_json::{Value, json};
use settings::Activation;

/// Run one activation with the handlers (the same dispatch as the native `kappa-action`).
pub async fn dispatch(env: &Env<'_>, activation: &Activation) -> Value {
    let ctx = &activation.context;
    let result = match activation.action.as_str() {
        "process" => group::process_event(env, ctx, activation.event.clone()).await,
        "push" => match serde_json::from_value::<PushEvent>(activation.event.clone()) {
            Ok(event) => push::push(env, event).await.map(to_value),
            Err(e) => Err(ActionError::BadEvent(e.to_string())),
        },
        "tick" => {
            // A Kafka feed event names its topic; an alarm checks everything.
            let topic = activation.event.pointer("/messages/0/topic").and_then(Value::as_str);
            tick::tick(env, topic).await.map(to_value)
        }
        "query" | "status" => return web(env, activation).await.to_openwhisk(),
        other => Err(ActionError::BadEvent(format!("unknown action [{other}]"))),
    };
    result.unwrap_or_else(|e| error_result(&e))
}

fn to_value<T: serde::Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// `{"error": {...}}`, with whether a retry makes sense (as the native runner answers).
pub fn error_result(e: &ActionError) -> Value {
    json!({"error": {"message": e.to_string(), "retryable": e.is_retryable(), "status": e.status(), "body": e.to_json()}})
}

/// Web routes: `POST /v1/queries`, `GET|DELETE /v1/queries/{id}`.
async fn web(env: &Env<'_>, activation: &Activation) -> WebResponse {
    if !activation.authorized() {
        return WebResponse::json(
            401,
            json!({"error": {"type": "security_exception", "reason": "missing or invalid API key"}, "status": 401}),
        );
    }
    let path = activation.path().trim_end_matches('/');
    let id = path.rsplit('/').next().and_then(QueryId::parse);
    let outcome = match (activation.method(), id) {
        ("post", _) => query::create(env, &activation.body()).await,
        ("get", Some(id)) => status::status(env, &id).await,
        ("delete", Some(id)) => query::release(env, &id).await,
        (method, _) => Ok(WebResponse::json(
            405,
            json!({"error": {"type": "method_not_allowed", "reason": format!("{method} {path} is not a route")}, "status": 405}),
        )),
    };
    outcome.unwrap_or_else(WebResponse::from)
}
