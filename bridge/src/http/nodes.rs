//! `GET /v1/nodes`: the poller's last picture of the cluster's nodes.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::{AppState, AuthUser};
use crate::slurm::poller::NodeSnapshot;

pub fn router() -> Router<AppState> {
    Router::new().route("/nodes", get(list_nodes))
}

async fn list_nodes(_user: AuthUser, State(state): State<AppState>) -> Json<NodeSnapshot> {
    let snapshot = state.nodes.borrow().clone();
    Json(NodeSnapshot::clone(&snapshot))
}
