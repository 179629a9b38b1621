//! The HTTP surface. Only this module knows HTTP; handlers extract their
//! inputs, call the store or `slurm`, and map the result. Reads come from the
//! store and the poller's snapshots, never from SLURM directly.

mod auth;
/// `ApiError`: every error answer, rendered as RFC 9457 problem+json.
pub mod error;
mod extract;
mod health;
pub mod health_reports;
pub(crate) mod jobs;
mod nodes;
/// Sign-in through the site's OpenID providers.
pub mod oidc;
pub mod openapi;
mod policy;
/// Binding, TLS, graceful shutdown, and the metrics listener.
pub mod server;
/// The web dashboard (`/ui/`), embedded.
pub mod ui;
mod users;
/// The worker endpoint (mutual TLS): what joined workers ask.
pub mod worker_api;
mod workers;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::sync::watch;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use extract::{ApiJson, ApiQuery, AuthUser, ClientAddr};

use crate::auth::jwt::Keys;
use crate::auth::pool::CredentialPool;
use crate::auth::revocation::Revocations;
use crate::auth::throttle::LoginThrottle;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::shutdown::Stopping;
use crate::slurm::poller::NodeSnapshot;
use crate::slurm::probe::SlurmHealth;
use crate::slurm::Slurm;
use crate::store::Store;
use crate::submission::Submitter;
use error::{ApiError, InternalErrorMessage};

/// Shared by every handler. Built once by `bridge::serve` (or a test) and
/// alive as long as the server. Cloning it (axum does, per request) copies
/// one pointer: `State` is an `Arc` of `Shared`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What `AppState` points to.
pub struct Shared {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub keys: Keys,
    pub revocations: Revocations,
    pub slurm: Slurm,
    /// Latest controller probe, written only by `slurm::probe`.
    pub slurm_health: watch::Receiver<SlurmHealth>,
    /// Latest node picture, written only by `slurm::poller`.
    pub nodes: watch::Receiver<Arc<NodeSnapshot>>,
    pub metrics: Metrics,
    /// Validate, record, submit, reconcile: `POST /v1/jobs`'s work.
    pub submitter: Submitter,
    /// Raised when the bridge stops: output streams end.
    pub stopping: Stopping,
    /// Open output streams per user (`max_follows_per_user`).
    pub follow_slots: jobs::FollowSlots,
    /// The threads that check passwords (argon2id, PAM), with their queue.
    pub credentials: CredentialPool,
    /// Logins and registrations per client address and per name.
    pub login_throttle: Arc<LoginThrottle>,
    /// Accounts by id, so authenticating a request needs no query. Entries
    /// are dropped whenever an account changes (`UserCache::forget`).
    pub user_cache: UserCache,
    /// The cluster CA and the worker endpoint, when workers may join.
    pub workers: Option<Arc<crate::workers::Workers>>,
    /// Nodes of recent jobs, for checking workers' health records.
    pub job_nodes: health_reports::JobNodes,
    /// The health-report secret (from --health-secret-file), if configured.
    pub health_secret: Option<Vec<u8>>,
    /// The configured OpenID providers, their discovery and keys.
    pub oidc: crate::auth::oidc::Oidc,
    /// Accounts of provider identities by (issuer, subject), so a provider's
    /// bearer token needs no identity query.
    pub oidc_accounts: std::sync::RwLock<std::collections::HashMap<(String, String), i64>>,
    /// A hash of a random password: logins for unknown names verify
    /// against it, so they take as long as real ones.
    pub dummy_hash: Arc<String>,
}

/// Accounts by id; see `AppState::user_cache`.
///
/// A request that missed the cache reads the account and then puts it in;
/// if an admin changed the account between that read and the put, the put
/// would keep the old role (or a disabled account enabled) indefinitely.
/// So every `forget` bumps a generation, and a put made with a generation
/// read before the change is dropped.
#[derive(Clone, Default)]
pub struct UserCache {
    users: Arc<std::sync::RwLock<std::collections::HashMap<i64, crate::store::users::User>>>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl UserCache {
    pub fn get(&self, id: i64) -> Option<crate::store::users::User> {
        self.users.read().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    /// Take this before reading an account from the store; pass it to `put`.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Caches `user` unless an account changed since `generation`.
    pub fn put(&self, user: crate::store::users::User, generation: u64) {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        // Compared under the write lock, which `forget` also takes.
        if self.generation() == generation {
            users.insert(user.id, user);
        }
    }

    pub fn forget(&self, id: i64) {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        users.remove(&id);
    }
}

/// The whole router, without a socket: tests drive it with `oneshot`.
pub fn app(state: AppState) -> Router {
    let body_limit = state.settings.limits.max_body_bytes;
    Router::new()
        .merge(health::router())
        .merge(ui::router())
        .nest(
            "/v1",
            Router::new()
                .merge(auth::router())
                .merge(oidc::router())
                .merge(users::router())
                .merge(jobs::router())
                .merge(nodes::router())
                .merge(policy::router())
                .merge(health_reports::router())
                .merge(workers::router())
                .merge(openapi::router()),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            // One span per request: its id, and the user and job once the
            // handler knows them (`user` by `AuthUser`, `job` by the job
            // routes); every line logged inside, the access line included,
            // carries them (docs/OPERATIONS.md, "Logs").
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        uri = %request.uri().path(),
                        request_id,
                        user = tracing::field::Empty,
                        job = tracing::field::Empty,
                    )
                })
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Records latency by matched route and logs the cause of every 500.
async fn observe(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    if let Some(InternalErrorMessage(message)) = response.extensions().get::<InternalErrorMessage>() {
        tracing::error!(%route, error = %message, "internal error");
    }
    state
        .metrics
        .http_requests
        .with_label_values(&[method.as_str(), &route, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn not_found(request: Request) -> ApiError {
    ApiError::NotFound(format!("no resource at {}", request.uri().path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
