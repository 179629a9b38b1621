//! `GET /healthz` (alive, with the last SLURM probe) and `GET /readyz`
//! (SLURM reachable and the database writable: 503 otherwise).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use crate::slurm::probe::SlurmHealth;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(get_health)).route("/readyz", get(get_ready))
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

#[derive(Serialize)]
struct Ready {
    ready: bool,
    slurm: SlurmHealth,
    database: String,
}

async fn get_ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let slurm = state.slurm_health.borrow().clone();
    // A write that changes nothing still needs the write lock and a
    // writable file: the cheapest honest check.
    let database = match state.store.call(|conn| Ok(conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?)).await {
        Ok(()) => "writable".to_owned(),
        Err(e) => e.to_string(),
    };
    let ready = slurm.reachable && database == "writable";
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Ready { ready, slurm, database }))
}
