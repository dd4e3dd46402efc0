//! The OpenWhisk side of Kappa's native actions.
//!
//! A native action is a static binary named `exec` that the ActionLoop proxy starts once per
//! container and feeds one activation per stdin line; it answers each on fd 3. [`runner`] speaks
//! that protocol and hands a typed [`runner::Activation`] to a handler, so every action `main`
//! is only: set up the adapters, then `runner::serve(handler)`. The adapters that talk to the
//! platform live here too: [`chain::OpenWhiskChain`] (invoke the next link over the REST API),
//! [`http::ReqwestHttp`] (webhooks, the gateway) with bundled TLS roots — the action's
//! environment is bare —, [`clock::SystemClock`] and [`clock::TokioTimer`].
//!
//! Test with: `cargo test -p kappa-runtime` (the runner is tested by running an action binary
//! with the proxy's exact stdin/fd 3 protocol).

pub mod chain;
pub mod clock;
pub mod deployment;
pub mod http;
pub mod runner;
