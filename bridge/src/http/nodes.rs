//! `GET /v1/nodes`: the poller's last picture of the cluster's nodes, with
//! each node's last health record.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use odyssey_health_wire::records::Record;
use schemars::JsonSchema;
use serde::Serialize;

use super::error::ApiError;
use super::{AppState, AuthUser};
use crate::slurm::poller::{NodeSnapshot, NodeView};

pub fn router() -> Router<AppState> {
    Router::new().route("/nodes", get(list_nodes))
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
    reason: Option<String>,
    /// SLURM job ids running on the node.
    running_jobs: Vec<i64>,
    /// The node's last health record from the SPANK plugin, if any.
    health: Option<Record>,
    /// Seconds since that record was made.
    health_age_s: Option<f64>,
}

impl NodeBody {
    fn new(node: NodeView, health: Option<(Record, f64)>, now: f64) -> NodeBody {
        let info = node.info;
        NodeBody {
            name: info.name,
            state: info.state,
            cpus_total: info.cpus_total,
            cpus_allocated: info.cpus_allocated,
            memory_mb: info.memory_mb,
            free_memory_mb: info.free_memory_mb,
            load: info.load,
            reason: info.reason,
            running_jobs: node.running_jobs,
            health_age_s: health.as_ref().map(|(_, at)| (now - at).max(0.0)),
            health: health.map(|(record, _)| record),
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
    let now = crate::store::now();
    let nodes = snapshot
        .nodes
        .into_iter()
        .map(|node| {
            let found =
                latest.iter().position(|(record, _)| record.node == node.info.name).map(|i| latest.swap_remove(i));
            NodeBody::new(node, found.map(|(record, at)| (Record::Node(record), at)), now)
        })
        .collect();
    Ok(Json(Nodes { nodes, polled_at: snapshot.polled_at }))
}
