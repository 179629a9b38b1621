//! The worker endpoint (`/worker/v1`, its own listener, mutual TLS only):
//! what a joined worker asks of the bridge. The TLS layer admits only
//! certificates the cluster CA signed; here every request finds its
//! certificate in the store (by fingerprint), so a revoked or replaced
//! certificate is refused at once, and the certificate's worker is the only
//! node the request may speak for.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::health_reports::{self, Ingested, Reporter};
use super::workers::{body, enabled, view, WorkerBody};
use super::{ApiJson, AppState};
use crate::slurm::NodeName;
use crate::store::workers as store;
use crate::workers::WorkerState;

/// The SHA-256 of the client certificate the TLS layer verified; put into
/// every request of the connection by the acceptor (`server::serve_workers`).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Option<String>);

/// The worker a request comes from, proven by its certificate.
pub struct CertifiedWorker(pub String);

impl FromRequestParts<AppState> for CertifiedWorker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(PeerCertificate(Some(fingerprint))) = parts.extensions.get::<PeerCertificate>().cloned() else {
            return Err(ApiError::Unauthorized("the worker endpoint needs a client certificate".into()));
        };
        let owner = state.store.read(move |conn| store::certificate_owner(conn, &fingerprint)).await?;
        match owner {
            None => Err(ApiError::Forbidden("this certificate was not issued to a worker by this bridge".into())),
            Some(owner) if owner.revoked => Err(ApiError::Forbidden(format!(
                "this certificate of worker {} is revoked; join again with a new token",
                owner.worker
            ))),
            Some(owner) => {
                tracing::Span::current().record("user", format!("worker:{}", owner.worker));
                Ok(CertifiedWorker(owner.worker))
            }
        }
    }
}

/// The worker endpoint's router (served only on `--worker-listen`).
pub fn app(state: AppState) -> Router {
    Router::new()
        .nest(
            "/worker/v1",
            Router::new()
                .route("/config", get(config))
                .route("/heartbeat", post(heartbeat))
                .route("/self", get(myself))
                .route("/health-reports", post(health))
                .route("/renew", post(renew))
                .route("/leave", post(leave))
                .route("/requeue", post(requeue))
                .route("/left", post(left)),
        )
        .layer(axum::extract::DefaultBodyLimit::max(state.settings.limits.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(|request: &axum::extract::Request| {
            tracing::info_span!("worker_request", method = %request.method(), uri = %request.uri().path(), user = tracing::field::Empty)
        }))
        .with_state(state)
}

#[derive(Serialize, JsonSchema)]
pub(super) struct WorkerConfig {
    node: String,
    /// slurmctld's `host:port` for `slurmd --conf-server` (configless).
    conf_server: String,
    /// The cluster's munge key, base64.
    munge_key: String,
    /// Where slurm looks for munged's socket (AuthInfo), if not the default.
    munge_socket: Option<String>,
    /// slurmd's directories and files on this node (`%n` filled in): the
    /// worker creates their parents.
    slurmd_spool_dir: String,
    slurmd_log_file: Option<String>,
    slurmd_pid_file: Option<String>,
    features: Vec<String>,
}

async fn config(
    CertifiedWorker(name): CertifiedWorker,
    State(state): State<AppState>,
) -> Result<Json<WorkerConfig>, ApiError> {
    let workers = enabled(&state)?.clone();
    let join = state.slurm.join_config().await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let key = tokio::fs::read(&workers.munge_key).await.map_err(|e| {
        ApiError::Unavailable(format!("cannot read the munge key {}: {e}", workers.munge_key.display()))
    })?;
    let key_name = name.clone();
    let worker = state.store.read(move |conn| store::get(conn, &key_name)).await?;
    let fill = |path: &str| path.replace("%n", &name).replace("%h", &name);
    Ok(Json(WorkerConfig {
        conf_server: join.conf_server,
        munge_key: base64::engine::general_purpose::STANDARD.encode(key),
        munge_socket: join.munge_socket,
        slurmd_spool_dir: fill(&join.slurmd_spool_dir),
        slurmd_log_file: join.slurmd_log_file.as_deref().map(fill),
        slurmd_pid_file: join.slurmd_pid_file.as_deref().map(fill),
        features: worker.map(|w| w.features).unwrap_or_default(),
        node: name,
    }))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Heartbeat {
    /// 1-minute load average.
    load: Option<f64>,
    free_memory_bytes: Option<i64>,
    slurmd_running: bool,
}

#[derive(Serialize, JsonSchema)]
pub(super) struct HeartbeatAnswer {
    /// An admin asked this worker to leave: it should, now.
    leave_requested: bool,
    state: WorkerState,
}

async fn heartbeat(
    CertifiedWorker(name): CertifiedWorker,
    State(state): State<AppState>,
    ApiJson(beat): ApiJson<Heartbeat>,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let lost_after = enabled(&state)?.lost_after;
    let load = beat.load.filter(|l| l.is_finite() && *l >= 0.0);
    let free = beat.free_memory_bytes.filter(|m| *m >= 0);
    let key = name.clone();
    let leave_requested =
        state.store.call(move |conn| store::heartbeat(conn, &key, load, free, beat.slurmd_running)).await?;
    let worker = state.store.read(move |conn| store::get(conn, &name)).await?;
    let state_now = worker.map_or(WorkerState::Left, |w| body(&state, w, lost_after).state);
    Ok(Json(HeartbeatAnswer { leave_requested, state: state_now }))
}

async fn myself(
    CertifiedWorker(name): CertifiedWorker,
    State(state): State<AppState>,
) -> Result<Json<WorkerBody>, ApiError> {
    enabled(&state)?;
    Ok(Json(view(&state, &name).await?))
}

async fn health(
    CertifiedWorker(name): CertifiedWorker,
    State(state): State<AppState>,
    records: Bytes,
) -> Result<Json<Ingested>, ApiError> {
    health_reports::accept(&state, &records, Reporter::Worker(name)).await
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Renewal {
    /// A CSR for the worker's new key (PEM).
    csr: String,
}

#[derive(Serialize, JsonSchema)]
pub(super) struct Renewed {
    certificate: String,
    serial: String,
    expires_at: f64,
}

/// A new certificate for the same worker; the one the request came with
/// is revoked.
async fn renew(
    CertifiedWorker(name): CertifiedWorker,
    State(state): State<AppState>,
    axum::Extension(PeerCertificate(old)): axum::Extension<PeerCertificate>,
    ApiJson(renewal): ApiJson<Renewal>,
) -> Result<Json<Renewed>, ApiError> {
    let workers: Arc<crate::workers::Workers> = enabled(&state)?.clone();
    let signed = workers
        .ca
        .sign_worker(&renewal.csr, &name, workers.cert_lifetime)
        .map_err(|e| ApiError::invalid("csr", e.to_string()))?;
    let issued = store::Issued {
        fingerprint: signed.fingerprint.clone(),
        serial: signed.serial.clone(),
        expires_at: signed.expires_at,
    };
    let old = old.unwrap_or_default();
    let key = name.clone();
    state.store.call(move |conn| store::renew(conn, &key, &old, &issued)).await?;
    tracing::info!(worker = %name, serial = %signed.serial, "worker certificate renewed");
    Ok(Json(Renewed { certificate: signed.pem, serial: signed.serial, expires_at: signed.expires_at }))
}

fn node(name: &str) -> Result<NodeName, ApiError> {
    NodeName::parse(name).ok_or_else(|| ApiError::Internal(anyhow::anyhow!("worker name {name:?} is not a node name")))
}

/// The worker starts leaving: its node drains (running jobs finish,
/// nothing new starts).
async fn leave(
    CertifiedWorker(name): CertifiedWorker,
    State(state): State<AppState>,
) -> Result<Json<WorkerBody>, ApiError> {
    let lost_after = enabled(&state)?.lost_after;
    let node = node(&name)?;
    state
        .slurm
        .drain_node(&node, "worker leaving (odyssey-worker leave)")
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let key = name.clone();
    let worker = state
        .store
        .call(move |conn| {
            store::set_leaving(conn, &key)?;
            store::get(conn, &key)
        })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no worker named {name:?}")))?;
    tracing::info!(worker = %name, "worker leaving: node drained");
    Ok(Json(body(&state, worker, lost_after)))
}

#[derive(Serialize, JsonSchema)]
pub(super) struct Requeued {
    requeued: Vec<i64>,
}

/// A leaving worker that waited long enough hands its running jobs back
/// to SLURM, which runs them elsewhere.
async fn requeue(
    CertifiedWorker(name): CertifiedWorker,
    State(state): State<AppState>,
) -> Result<Json<Requeued>, ApiError> {
    let node = node(&name)?;
    let jobs = state.slurm.jobs_on(&node).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
    state.slurm.requeue(&jobs).await.map_err(|e| ApiError::Conflict(e.to_string()))?;
    tracing::info!(worker = %name, ?jobs, "leaving worker's jobs requeued");
    Ok(Json(Requeued { requeued: jobs }))
}

/// The worker stopped slurmd: its node is deleted from SLURM and every
/// certificate of it revoked (this request's included).
async fn left(
    CertifiedWorker(name): CertifiedWorker,
    State(state): State<AppState>,
) -> Result<Json<WorkerBody>, ApiError> {
    let lost_after = enabled(&state)?.lost_after;
    let node = node(&name)?;
    state.slurm.delete_node(&node).await.map_err(|e| ApiError::Conflict(format!("SLURM keeps node {name}: {e}")))?;
    let key = name.clone();
    let worker = state
        .store
        .call(move |conn| {
            store::set_left(conn, &key, "left the cluster")?;
            store::get(conn, &key)
        })
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no worker named {name:?}")))?;
    tracing::info!(worker = %name, "worker left: node deleted, certificates revoked");
    Ok(Json(body(&state, worker, lost_after)))
}
