//! The HTTP surface. Only this module knows HTTP; handlers read state that
//! background tasks keep fresh and never run SLURM commands themselves.

mod health;

use axum::extract::Request;
use axum::Router;
use tokio::sync::watch;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::slurm::probe::SlurmHealth;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Latest controller probe, written only by `slurm::probe`; lives as
    /// long as the server.
    pub slurm_health: watch::Receiver<SlurmHealth>,
}

/// The whole router, without a socket: tests drive it with `oneshot`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound { path: request.uri().path().to_owned() }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
