//! Kappa's actions as one WebAssembly module, for OpenWhisk platforms that run only Node.js.
//!
//! The module runs the same handlers as the native actions (`kappa-actions`), with the ports
//! implemented in Rust over a few JavaScript I/O primitives the Node.js entry supplies
//! (`js/io.js`): Kafka through kafkajs (partitions, watermarks, a fetch from an offset),
//! Redis through node-redis's client (the state store is `kappa-state-redis`'s, over a transport
//! of JavaScript calls), HTTP through `fetch`, and a timer.
//! `js/index.js` exports `main(params)`: the module reads the activation (the action's name
//! from `__OW_ACTION_NAME`) and runs the one dispatch of `kappa_actions::openwhisk`, as the
//! native binary does; settings, the chain and the web routes are written there once.
//!
//! Build with `scripts/build-actions.sh` (cargo `--target wasm32-unknown-unknown`,
//! `wasm-bindgen --target nodejs`, one `build/actions/<action>-wasm.zip` per action).
//! Test with: `cargo test -p kappa-wasm` (the pure parts) and `actions/hosts/wasm/test/run.mjs`
//! (the zips against real Kafka and Redis; `scripts/test.sh` runs it).

pub mod bench;
pub mod frame;

#[cfg(target_arch = "wasm32")]
pub mod js;

#[cfg(target_arch = "wasm32")]
mod zones;

#[cfg(all(target_arch = "wasm32", feature = "conformance"))]
pub mod conformance;

// Built with WASM SIMD (`-C target-feature=+simd128`, the repository's .cargo/config.toml):
// memchr and simdutf8 choose their simd128 code at compile time. RUSTFLAGS in the environment
// replaces the config's flags, so a build without it fails here instead of shipping a slower
// module; KAPPA_WASM_NO_SIMD=1 allows one (scripts/bench-wasm-fold.sh measures the difference).
#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
const _: () = assert!(
    option_env!("KAPPA_WASM_NO_SIMD").is_some(),
    "kappa-wasm is built with -C target-feature=+simd128 (.cargo/config.toml); is RUSTFLAGS set?"
);
