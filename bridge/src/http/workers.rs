//! The public side of workers (issue #11): join tokens (admins), joining
//! with one (the token is the credential), the list, and removal (admins).
//! What a joined worker does afterwards goes through `worker_api`, over
//! mutual TLS.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{ApiJson, AppState, AuthUser, ClientAddr};
use crate::slurm::NodeName;
use crate::store::now;
use crate::store::users::Role;
use crate::store::workers::{self as store, Issued, JoinRefused, Worker};
use crate::workers::{check_features, check_name, new_token, token_hash, WorkerState, Workers, MAX_TOKEN_TTL};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workers", get(list))
        .route("/workers/tokens", post(create_token))
        .route("/workers/join", post(join))
        .route("/workers/{name}", delete(remove))
}

pub(super) fn enabled(state: &AppState) -> Result<&Arc<Workers>, ApiError> {
    state.workers.as_ref().ok_or_else(|| {
        ApiError::Unavailable("workers cannot join this bridge: it has no worker endpoint (--worker-listen)".into())
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenRequest {
    /// Seconds until the token expires: 60 to 604800 (7 days); 3600 if absent.
    #[serde(default)]
    expires_in_s: Option<u64>,
    /// Node features the worker gets (SLURM `Feature=`), besides its own.
    #[serde(default)]
    features: Vec<String>,
}

#[derive(Serialize, JsonSchema)]
pub(super) struct TokenBody {
    /// Shown once: the bridge keeps only its hash.
    token: String,
    expires_at: f64,
    features: Vec<String>,
}

/// An admin issues a one-time join token.
async fn create_token(
    caller: AuthUser,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<TokenBody>), ApiError> {
    caller.require(Role::Admin)?;
    enabled(&state)?;
    let ttl = request.expires_in_s.unwrap_or(3600);
    if !(60..=MAX_TOKEN_TTL.as_secs()).contains(&ttl) {
        return Err(ApiError::invalid("expires_in_s", format!("60 to {} seconds", MAX_TOKEN_TTL.as_secs())));
    }
    let features = check_features(&request.features).map_err(|e| ApiError::invalid("features", e))?;
    let (token, hash) = new_token();
    let expires_at = now() + ttl as f64;
    let (by, kept) = (caller.user.name.clone(), features.clone());
    state.store.call(move |conn| store::insert_token(conn, &hash, &by, expires_at, &kept)).await?;
    tracing::info!(admin = %caller.user.name, expires_at, ?features, "worker join token issued");
    Ok((StatusCode::CREATED, Json(TokenBody { token, expires_at, features })))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct JoinRequest {
    token: String,
    /// The node name to join as (the machine's host name, usually).
    name: String,
    /// PEM certificate signing request for the worker's own key: the key
    /// never leaves the worker. Its subject is ignored.
    csr: String,
    /// Features the worker declares (SLURM `Feature=`), added to the token's.
    #[serde(default)]
    features: Vec<String>,
}

#[derive(Serialize, JsonSchema)]
pub(super) struct JoinBody {
    name: String,
    /// The worker's client certificate (PEM), for the worker endpoint.
    certificate: String,
    serial: String,
    expires_at: f64,
    /// The cluster CA (PEM): the worker endpoint's certificate chains to it.
    ca_certificate: String,
    /// The worker endpoint (mutual TLS).
    endpoint: String,
    features: Vec<String>,
}

/// A machine joins with a one-time token and a CSR; it gets a certificate
/// naming it. Throttled per address like sign-ins.
async fn join(
    ClientAddr(addr): ClientAddr,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<JoinRequest>,
) -> Result<(StatusCode, Json<JoinBody>), ApiError> {
    let workers = enabled(&state)?.clone();
    state.login_throttle.check(addr, None).map_err(|t| ApiError::TooManyRequests {
        detail: "too many join attempts from this address".into(),
        retry_after: t.retry_after.as_secs().max(1),
    })?;
    check_name(&request.name).map_err(|e| ApiError::invalid("name", e))?;
    let mut extra = check_features(&request.features).map_err(|e| ApiError::invalid("features", e))?;
    // Every joined node carries it: jobs can ask for workers or avoid them
    // (`--constraint worker`), and tools can tell them from configured nodes.
    if !extra.iter().any(|f| f == crate::workers::WORKER_FEATURE) {
        extra.push(crate::workers::WORKER_FEATURE.to_owned());
    }
    let fixed = state.nodes.borrow().nodes.iter().any(|n| n.info.name == request.name);
    let name = request.name.clone();
    let known_worker = state.store.read(move |conn| store::get(conn, &name)).await?.is_some();
    if fixed && !known_worker {
        return Err(ApiError::Conflict(format!(
            "{:?} is a node of the cluster's configuration, not a worker's name",
            request.name
        )));
    }
    let signed = workers
        .ca
        .sign_worker(&request.csr, &request.name, workers.cert_lifetime)
        .map_err(|e| ApiError::invalid("csr", e.to_string()))?;
    let issued = Issued {
        fingerprint: signed.fingerprint.clone(),
        serial: signed.serial.clone(),
        expires_at: signed.expires_at,
    };
    let (hash, name) = (token_hash(&request.token), request.name.clone());
    let (nodes, lost_after) = (state.nodes.clone(), workers.lost_after);
    let joined = state
        .store
        .call(move |conn| {
            store::join(conn, &hash, &name, &extra, &issued, |existing: &Worker| {
                let snapshot = nodes.borrow();
                let node = snapshot.nodes.iter().find(|n| n.info.name == existing.name);
                WorkerState::of(existing, node, now(), lost_after) == WorkerState::Lost
            })
        })
        .await?;
    let features = match joined {
        Ok(features) => features,
        Err(JoinRefused::Token(why)) => {
            tracing::warn!(worker = %request.name, ?addr, %why, "worker join refused");
            return Err(ApiError::Unauthorized(why.to_string()));
        }
        Err(JoinRefused::Name(why)) => return Err(ApiError::Conflict(why.to_string())),
    };
    tracing::info!(worker = %request.name, serial = %signed.serial, ?features, "worker joined");
    Ok((
        StatusCode::CREATED,
        Json(JoinBody {
            name: request.name,
            certificate: signed.pem,
            serial: signed.serial,
            expires_at: signed.expires_at,
            ca_certificate: workers.ca.pem().to_owned(),
            endpoint: workers.endpoint.clone(),
            features,
        }),
    ))
}

#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Worker")]
pub(super) struct WorkerBody {
    name: String,
    pub(super) state: WorkerState,
    features: Vec<String>,
    joined_at: f64,
    left_at: Option<f64>,
    /// The current certificate's serial (hex) and expiry.
    certificate_serial: Option<String>,
    certificate_expires_at: Option<f64>,
    last_heartbeat_at: Option<f64>,
    load: Option<f64>,
    free_memory_bytes: Option<i64>,
    /// An admin asked it to leave; it does at its next heartbeat.
    leave_requested: bool,
    /// SLURM job ids running on it.
    running_jobs: Vec<i64>,
}

pub(super) fn body(state: &AppState, worker: Worker, lost_after: std::time::Duration) -> WorkerBody {
    let snapshot = state.nodes.borrow();
    let node = snapshot.nodes.iter().find(|n| n.info.name == worker.name);
    WorkerBody {
        state: WorkerState::of(&worker, node, now(), lost_after),
        running_jobs: node.map(|n| n.running_jobs.clone()).unwrap_or_default(),
        name: worker.name,
        features: worker.features,
        joined_at: worker.joined_at,
        left_at: worker.left_at,
        certificate_serial: worker.serial,
        certificate_expires_at: worker.cert_expires_at,
        last_heartbeat_at: worker.heartbeat_at,
        load: worker.load,
        free_memory_bytes: worker.free_memory_bytes,
        leave_requested: worker.leave_requested,
    }
}

/// The worker named `name` as the API shows it; 404 if there is none.
pub(super) async fn view(state: &AppState, name: &str) -> Result<WorkerBody, ApiError> {
    let lost_after = state.workers.as_ref().map_or(crate::workers::DEFAULT_LOST_AFTER, |w| w.lost_after);
    let key = name.to_owned();
    let worker = state
        .store
        .read(move |conn| store::get(conn, &key))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no worker named {name:?}")))?;
    Ok(body(state, worker, lost_after))
}

#[derive(Serialize, JsonSchema)]
pub(super) struct WorkersBody {
    workers: Vec<WorkerBody>,
}

/// Without a worker endpoint the list is what joined before (if anything),
/// judged with the default silence for "lost".
async fn list(_user: AuthUser, State(state): State<AppState>) -> Result<Json<WorkersBody>, ApiError> {
    let lost_after = state.workers.as_ref().map_or(crate::workers::DEFAULT_LOST_AFTER, |w| w.lost_after);
    let workers = state.store.read(store::list).await?;
    Ok(Json(WorkersBody { workers: workers.into_iter().map(|w| body(&state, w, lost_after)).collect() }))
}

/// An admin removes a worker: a live one is asked to leave (it drains,
/// lets its jobs finish and removes itself); a lost one is removed from
/// SLURM at once and its certificates revoked.
async fn remove(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<WorkerBody>), ApiError> {
    caller.require(Role::Admin)?;
    enabled(&state)?;
    match view(&state, &name).await?.state {
        WorkerState::Left => {}
        WorkerState::Lost | WorkerState::Joining => {
            let node = NodeName::parse(&name).ok_or_else(|| ApiError::NotFound(format!("no worker named {name:?}")))?;
            let jobs = state.slurm.jobs_on(&node).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
            state.slurm.requeue(&jobs).await.map_err(|e| ApiError::Unavailable(e.to_string()))?;
            state.slurm.delete_node(&node).await.map_err(|e| ApiError::Conflict(e.to_string()))?;
            let key = name.clone();
            state.store.call(move |conn| store::set_left(conn, &key, "removed by an admin")).await?;
            tracing::info!(admin = %caller.user.name, worker = %name, "lost worker removed");
        }
        _ => {
            let key = name.clone();
            state.store.call(move |conn| store::request_leave(conn, &key)).await?;
            tracing::info!(admin = %caller.user.name, worker = %name, "worker asked to leave");
        }
    }
    Ok((StatusCode::ACCEPTED, Json(view(&state, &name).await?)))
}
