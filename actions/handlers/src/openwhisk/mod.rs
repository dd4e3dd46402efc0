//! What both hosts share about being an OpenWhisk action, written once: the deployment's
//! [`Settings`], the [`Invocation`] a host reads from its platform, the [`OpenWhiskChain`] that
//! fires the next link over the REST API, and the [`dispatch`] (action handlers and web
//! routes, error results). The native binary (`actions/hosts/native`) and the WASM module
//! (`actions/hosts/wasm`) only supply I/O: the runner or the Node.js entry, and the ports.

mod chain;
mod dispatch;
mod invocation;
mod settings;

pub use chain::OpenWhiskChain;
pub use dispatch::{ACTIONS, dispatch, error_result};
pub use invocation::Invocation;
pub use settings::{LinkKind, SETTINGS, Settings, SettingsError, constant_time_eq};
