//! Helpers shared by the embedded store's integration tests.
#![allow(unreachable_pub, reason = "a module of test binaries")]

use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;

/// A fresh file path under cargo's scratch directory for integration tests.
pub fn scratch(tag: &str) -> PathBuf {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kappa-state-embedded");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{tag}-{:016x}.redb", h.finish()))
}
