//! `GET /v1/openapi.json`: the API described in OpenAPI 3.1 (docs/openapi.json).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

/// Kept in docs/ so it can be read without running the bridge; a test checks
/// that it names every route the router serves.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/openapi.json",
        get(|| async { ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response() }),
    )
}
