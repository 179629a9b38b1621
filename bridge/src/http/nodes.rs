//! `GET /v1/nodes`: the poller's last picture of the cluster's nodes.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::{AppState, AuthUser};
use serde::Serialize;

use crate::error::ApiError;
use crate::slurm::poller::{NodeSnapshot, NodeView};

pub fn router() -> Router<AppState> {
    Router::new().route("/nodes", get(list_nodes))
}

#[derive(Serialize)]
struct NodeWithHealth {
    #[serde(flatten)]
    node: NodeView,
    /// The node's last health record from the SPANK plugin, if any.
    health: Option<serde_json::Value>,
    /// Seconds since that record was made.
    health_age_s: Option<f64>,
}

#[derive(Serialize)]
struct Nodes {
    nodes: Vec<NodeWithHealth>,
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
            let found = latest.iter().position(|(name, _, _)| *name == node.info.name).map(|i| latest.swap_remove(i));
            NodeWithHealth {
                health_age_s: found.as_ref().map(|(_, _, at)| (now - at).max(0.0)),
                health: found.map(|(_, body, _)| body),
                node,
            }
        })
        .collect();
    Ok(Json(Nodes { nodes, polled_at: snapshot.polled_at }))
}
