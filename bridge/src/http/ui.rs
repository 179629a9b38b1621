//! The web dashboard at `/ui/`: three files embedded in the binary (no
//! build step, no Node at run time), served with a strict
//! Content-Security-Policy. The page uses the public `/v1` API like any
//! client, keeps its tokens in memory, and runs no inline script.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;
use crate::auth::oidc::Oidc;
use axum::extract::State;

const INDEX: &str = include_str!("../../ui/index.html");
const APP_JS: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/style.css");

/// Only this origin's script, styles and API (and the token endpoints of
/// the OpenID providers the page signs in with, by their issuer's origin);
/// no frames, plugins, forms posted elsewhere, or inline code.
pub fn csp(oidc: &Oidc) -> String {
    let mut origins = vec!["'self'".to_owned()];
    for issuer in oidc.issuers().iter().filter(|i| i.config.client_id.is_some()) {
        // The issuer's origin, and the token endpoint's if it lives elsewhere.
        let token_endpoint = issuer.cached_discovery().and_then(|d| d.token_endpoint);
        for url in std::iter::once(issuer.config.issuer.clone()).chain(token_endpoint) {
            if let Ok(url) = reqwest::Url::parse(&url) {
                let origin = url.origin().ascii_serialization();
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
        }
    }
    let connect = origins.join(" ");
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src {connect}; img-src 'self' data:; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|State(state): State<AppState>| async move { asset(&state, "text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/ui/app.js",
            get(|State(state): State<AppState>| async move { asset(&state, "text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|State(state): State<AppState>| async move { asset(&state, "text/css; charset=utf-8", STYLE) }),
        )
}

fn asset(state: &AppState, content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let policy = HeaderValue::from_str(&csp(&state.oidc)).unwrap_or(HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Embedded in this binary: a new bridge brings new files.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
