//! The web UI, served by the processor on its HTTP port.
//!
//! A single page written in plain JavaScript, CSS and inline SVG, embedded in
//! the binary with `include_str!`: the browser needs nothing beyond the
//! processor (no CDN, no build step, no npm package in what ships). Every
//! path under `/ui/` that is not an asset answers the page, which routes on
//! its own URL, so links to a window, a filter or a request can be shared.
//! The page reads the analysis API (`/v1/report`, `/v1/spikes`,
//! `/v1/requests`, ...) and the routes of [`api`], with the token the user
//! signs in with (kept in `sessionStorage`, sent as a bearer token).
//!
//! - [`api`]: the JSON routes the pages need beyond the analysis API.
//! - [`series`]: the timeline's series per host.
//! - [`fingerprint`]: one SQL fingerprint over a window.
//!
//! **Architecture invariant:** the UI has no access of its own: every datum
//! it shows comes through a JSON route that checks the token, so a project
//! token sees in the UI exactly what it could read from the API.

pub mod api;
pub mod fingerprint;
pub mod series;

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::App;
use crate::analysis::api::ApiState;
use crate::analysis::sql::SqlLimits;

/// One embedded file: path under `/ui/assets/`, content type, bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX_HTML: &str = include_str!("assets/index.html");

const ASSETS: [Asset; 3] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/icon.svg"),
    },
];

/// Scripts and styles from the processor only; data only from its API. The
/// page builds SVG with attributes, never inline script, so `script-src`
/// needs no exception. `blob:` lets the user open the flame graph SVG.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
                   connect-src 'self'; frame-src blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The UI's routes: the page, its assets, and its data routes. The config's
/// admin tokens read every project, as in the analysis API.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(page))
        .route("/ui/assets/{name}", get(asset))
        .route("/ui/{*path}", get(deep_page))
        .merge(api::routes(ApiState::new(app, SqlLimits::default())))
}

/// Headers every UI answer carries.
fn secured(mut response: Response, content_type: &'static str) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The assets change only with the binary; revalidating is cheap and
    // keeps a browser from mixing an old script with a new processor.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn page() -> Response {
    secured(INDEX_HTML.into_response(), "text/html; charset=utf-8")
}

/// A page path (the page routes on it), but never a missing asset: a
/// stale or mistyped asset link gets a 404, not the page as a script.
async fn deep_page(Path(path): Path<String>) -> Response {
    if path.starts_with("assets/") {
        return (StatusCode::NOT_FOUND, format!("no UI asset at {path:?}")).into_response();
    }
    page().await
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => secured(a.body.into_response(), a.content_type),
        None => (StatusCode::NOT_FOUND, format!("no UI asset named {name:?}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_assets_that_exist() {
        // Every script, stylesheet and icon the page names is served here,
        // from this origin: a CDN link or a missing file would fail offline.
        let mut named = 0;
        for attr in ["src=\"", "href=\""] {
            for part in INDEX_HTML.split(attr).skip(1) {
                let url = part.split('"').next().unwrap();
                let name = url
                    .strip_prefix("/ui/assets/")
                    .unwrap_or_else(|| panic!("{url} is not an embedded asset"));
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "{name} is named by the page but not embedded"
                );
                named += 1;
            }
        }
        assert_eq!(
            named,
            ASSETS.len(),
            "every embedded asset is used by the page"
        );
    }

    #[test]
    fn the_script_reaches_only_this_origin() {
        for a in &ASSETS {
            // The SVG namespace is a name, not a place the browser goes.
            let body = a.body.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"),
                "{} names another origin",
                a.name
            );
        }
    }
}
