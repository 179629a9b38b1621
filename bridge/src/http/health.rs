//! `GET /healthz`: the process answers, and what the last SLURM probe saw.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use crate::slurm::probe::SlurmHealth;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(get_health))
}

#[derive(Serialize)]
struct Health {
    /// Always "ok": the bridge is alive if it answers at all.
    status: &'static str,
    slurm: SlurmHealth,
}

/// Reads the probe's last result: no SLURM command runs per request.
async fn get_health(State(state): State<AppState>) -> Json<Health> {
    let slurm = state.slurm_health.borrow().clone();
    Json(Health { status: "ok", slurm })
}
