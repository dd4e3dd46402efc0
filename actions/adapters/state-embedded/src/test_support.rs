//! Helpers shared by the unit tests.

use kappa_core::ports::PortResult;

use crate::committer::{Request, Typed};
use crate::tables::db_error;

/// A fresh file path in its own scratch directory (`{module}-{name}`), removed by the test.
pub(crate) fn scratch(module: &str, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kappa-{module}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("state.redb")
}

/// A write that fails (the storage says it is corrupted), aborting the batch it is in.
pub(crate) fn failing_write() -> Request {
    let fail = |_: &redb::WriteTransaction| -> PortResult<()> {
        Err(db_error("test", redb::StorageError::Corrupted("injected".into())))
    };
    let (reply, _) = tokio::sync::oneshot::channel();
    Box::new(Typed::new("fail", fail, |_: &()| {}, reply))
}
