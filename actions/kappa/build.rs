//! Embeds the dashboard's WASM core (`dashboard/dist/kappa_web_bg.wasm`, built by
//! `dashboard/build-wasm.sh`, not committed: ~2 MB) when it has been built. Without it the
//! binary serves the page with an empty core, and the page says how to build it.

use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let name = "kappa_web_bg.wasm";
    let src = Path::new("dashboard/dist").join(name);
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed=dashboard/dist");
    let bytes = std::fs::read(&src).unwrap_or_default();
    std::fs::write(out.join(name), bytes).expect("write OUT_DIR");
}
