//! `GET /v1/nodes`: the poller's last picture of the cluster's nodes, with
//! each node's last health record.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use odyssey_health_wire::records::Record;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{ApiJson, AppState, AuthUser};
use crate::slurm::poller::{NodeSnapshot, NodeView};
use crate::slurm::{NodeName, SlurmError};
use crate::store::users::Role;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/nodes", get(list_nodes))
        .route("/nodes/{name}/drain", post(drain_node))
        .route("/nodes/{name}/resume", post(resume_node))
}

#[derive(Serialize, JsonSchema)]
#[schemars(rename = "Node")]
pub(super) struct NodeBody {
    name: String,
    /// SLURM's state, long form (`idle`, `mixed`, `drained`, ...).
    state: String,
    cpus_total: u32,
    cpus_allocated: u32,
    memory_mb: u64,
    free_memory_mb: Option<u64>,
    load: Option<f64>,
    /// Node features; `spare` marks a backup worker that retries prefer.
    features: Vec<String>,
    reason: Option<String>,
    /// SLURM job ids running on the node.
    running_jobs: Vec<i64>,
    /// The node's last health record from the SPANK plugin, if any.
    health: Option<Record>,
    /// Seconds since that record was made.
    health_age_s: Option<f64>,
    /// How the node's health records are authenticated: `certificate` for
    /// a joined worker (mutual TLS, its own certificate), `shared_secret`
    /// for a configured node (the cluster's secret).
    health_auth: HealthAuth,
}

#[derive(Serialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub(super) enum HealthAuth {
    Certificate,
    SharedSecret,
}

impl NodeBody {
    fn new(node: NodeView, health: Option<(Record, f64)>, now: f64, health_auth: HealthAuth) -> NodeBody {
        let info = node.info;
        NodeBody {
            name: info.name,
            state: info.state,
            cpus_total: info.cpus_total,
            cpus_allocated: info.cpus_allocated,
            memory_mb: info.memory_mb,
            free_memory_mb: info.free_memory_mb,
            load: info.load,
            features: info.features,
            reason: info.reason,
            running_jobs: node.running_jobs,
            health_age_s: health.as_ref().map(|(_, at)| (now - at).max(0.0)),
            health: health.map(|(record, _)| record),
            health_auth,
        }
    }
}

#[derive(Serialize, JsonSchema)]
pub(super) struct Nodes {
    nodes: Vec<NodeBody>,
    polled_at: Option<f64>,
}

async fn list_nodes(_user: AuthUser, State(state): State<AppState>) -> Result<Json<Nodes>, ApiError> {
    let snapshot: NodeSnapshot = NodeSnapshot::clone(&state.nodes.borrow());
    let mut latest = state.store.read(crate::store::health::latest_per_node).await?;
    let workers = state.store.read(crate::store::workers::present_names).await?;
    let now = crate::store::now();
    let nodes = snapshot
        .nodes
        .into_iter()
        .map(|node| {
            let found =
                latest.iter().position(|(record, _)| record.node == node.info.name).map(|i| latest.swap_remove(i));
            let auth =
                if workers.contains(&node.info.name) { HealthAuth::Certificate } else { HealthAuth::SharedSecret };
            NodeBody::new(node, found.map(|(record, at)| (Record::Node(record), at)), now, auth)
        })
        .collect();
    Ok(Json(Nodes { nodes, polled_at: snapshot.polled_at }))
}

/// Why an admin drains or resumes a node (shown by sinfo and `GET /v1/nodes`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NodeAction {
    /// One line, at most `MAX_REASON` bytes.
    reason: String,
}

/// Longest reason SLURM is given.
const MAX_REASON: usize = 200;

#[derive(Serialize, JsonSchema)]
pub(super) struct NodeActionBody {
    name: String,
    /// `drain` or `resume`.
    action: &'static str,
    reason: String,
}

/// The node, if the last poll saw it, and a checked reason.
fn checked(state: &AppState, name: &str, action: &NodeAction) -> Result<NodeName, ApiError> {
    let reason = action.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::Invalid {
            field: "reason".into(),
            detail: format!("one line of 1 to {MAX_REASON} bytes without control characters"),
        });
    }
    let known = state.nodes.borrow().nodes.iter().any(|n| n.info.name == name);
    match NodeName::parse(name) {
        Some(node) if known => Ok(node),
        _ => Err(ApiError::NotFound(format!("no node named {name:?} in the cluster"))),
    }
}

fn slurm_error(err: SlurmError) -> ApiError {
    match err {
        SlurmError::Rejected { stderr, .. } => ApiError::Conflict(stderr),
        other => ApiError::Unavailable(other.to_string()),
    }
}

/// Drains a node: running jobs finish, nothing new starts there (admins).
async fn drain_node(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(action): ApiJson<NodeAction>,
) -> Result<Json<NodeActionBody>, ApiError> {
    caller.require(Role::Admin)?;
    let node = checked(&state, &name, &action)?;
    let reason = format!("{} (by {} through the bridge)", action.reason.trim(), caller.user.name);
    state.slurm.drain_node(&node, &reason).await.map_err(slurm_error)?;
    tracing::info!(admin = %caller.user.name, node = %name, %reason, "node drained");
    Ok(Json(NodeActionBody { name, action: "drain", reason }))
}

/// Returns a drained or down node to service (admins).
async fn resume_node(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(action): ApiJson<NodeAction>,
) -> Result<Json<NodeActionBody>, ApiError> {
    caller.require(Role::Admin)?;
    let node = checked(&state, &name, &action)?;
    state.slurm.resume_node(&node).await.map_err(slurm_error)?;
    let reason = action.reason.trim().to_owned();
    tracing::info!(admin = %caller.user.name, node = %name, %reason, "node resumed");
    Ok(Json(NodeActionBody { name, action: "resume", reason }))
}
