//! The page's files from `web/`, compiled into the binary: the page works
//! with no network, and building it needs no npm or bundler.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Web;

/// One file of the page.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_str!(concat!("../../../web/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/style.css", "style.css", "text/css; charset=utf-8"),
    asset!("/app.js", "app.js", JS),
    asset!("/api.js", "api.js", JS),
    asset!("/dom.js", "dom.js", JS),
    asset!("/live-text.js", "live-text.js", JS),
    asset!("/screens.js", "screens.js", JS),
    asset!("/editor.js", "editor.js", JS),
    asset!("/history.js", "history.js", JS),
    asset!("/trust.js", "trust.js", JS),
];

pub(crate) fn routes() -> Router<Web> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(asset.path, get(move || async move { serve(asset) }))
    })
}

fn serve(asset: &'static Asset) -> Response {
    let mut response = asset.body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    /// A module added to `web/` but not listed here would fail to load in
    /// the browser only: catch it at `cargo test`.
    #[test]
    fn every_file_in_web_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let path = if name == "index.html" {
                "/".to_owned()
            } else {
                format!("/{name}")
            };
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "web/{name} is not in ASSETS"
            );
        }
    }
}
