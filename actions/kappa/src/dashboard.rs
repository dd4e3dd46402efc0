//! The dashboard at `/`: a static page embedded in the binary (no network beyond Kappa).
//!
//! Sources are in `actions/kappa/dashboard/` (plain JavaScript modules, uPlot for charts, the
//! core in the browser from `actions/web`); `dashboard/build.sh` bundles them with esbuild into
//! `dashboard/dist/`. The page (`index.html`, `app.js`, `app.css`, ~80 KB) is committed; the
//! WASM core (~2 MB) is built by `dashboard/build-wasm.sh` and embedded by `build.rs` when
//! present (without it the page loads and says how to build it).

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// One embedded file.
struct Asset {
    name: &'static str,
    mime: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        mime: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../dashboard/dist/app.js"),
    },
    Asset {
        name: "app.css",
        mime: "text/css; charset=utf-8",
        bytes: include_bytes!("../dashboard/dist/app.css"),
    },
    Asset {
        name: "kappa_web_bg.wasm",
        mime: "application/wasm",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/kappa_web_bg.wasm")),
    },
];

const INDEX: &str = include_str!("../dashboard/dist/index.html");

/// `GET /`: the page.
pub async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")],
        INDEX,
    )
        .into_response()
}

/// `GET /assets/{file}`: an embedded file, or 404.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => ([(header::CONTENT_TYPE, a.mime), (header::CACHE_CONTROL, "no-cache")], a.bytes)
            .into_response(),
        None => {
            kappa_push::error::ApiError::not_found(format!("no asset [{name}]")).into_response()
        }
    }
}

/// Whether the WASM core was built into this binary.
pub fn has_core() -> bool {
    ASSETS.iter().any(|a| a.name == "kappa_web_bg.wasm" && !a.bytes.is_empty())
}

/// Names and sizes of the embedded files (for tests and the page-weight figure).
pub fn assets() -> impl Iterator<Item = (&'static str, usize)> {
    std::iter::once(("index.html", INDEX.len()))
        .chain(ASSETS.iter().map(|a| (a.name, a.bytes.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_embedded() {
        assert!(INDEX.contains("/assets/app.js") && INDEX.contains("/assets/app.css"));
        let sizes: Vec<_> = assets().collect();
        for name in ["index.html", "app.js", "app.css"] {
            assert!(sizes.iter().any(|(n, len)| *n == name && *len > 0), "{name}: {sizes:?}");
        }
        // The page loads the core from here.
        assert!(
            ASSETS.iter().any(|a| a.name == "kappa_web_bg.wasm" && a.mime == "application/wasm")
        );
    }

    #[tokio::test]
    async fn assets_are_served_with_their_type_and_unknown_ones_are_404() {
        let r = asset(Path("app.js".into())).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(asset(Path("nope.js".into())).await.status(), 404);
        assert_eq!(index().await.status(), 200);
    }
}
