//! The OpenWhisk side of Kappa's native actions.
//!
//! A native action is a static binary named `exec` that the ActionLoop proxy starts once per
//! container and feeds one activation per stdin line; it answers each on fd 3. [`runner`] speaks
//! that protocol and hands a typed [`runner::Activation`] to a handler, so every action `main`
//! is only: set up the adapters, then `runner::serve(handler)` with the one dispatch of
//! `kappa_actions::openwhisk` (settings, the chain and the web routes are written there, once
//! for both hosts). The native adapters live here: [`http::ReqwestHttp`] (webhooks, the gateway) with bundled TLS roots — the action's
//! environment is bare —, [`clock::SystemClock`] and [`clock::TokioTimer`].
//!
//! Test with: `cargo test -p kappa-runtime` (the runner is tested by running an action binary
//! with the proxy's exact stdin/fd 3 protocol).

pub mod clock;
pub mod http;
pub mod runner;
