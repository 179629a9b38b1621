//! `GET /healthz` (alive, with the last SLURM probe) and `GET /readyz`
//! (SLURM reachable and the database writable: 503 otherwise).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::Serialize;

use super::AppState;
use crate::slurm::probe::SlurmHealth;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(get_health)).route("/readyz", get(get_ready))
}

/// The controller probe's last answer.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "SlurmHealth")]
struct SlurmBody {
    reachable: bool,
    /// `scontrol ping`'s line for the primary controller.
    #[serde(skip_serializing_if = "Option::is_none")]
    controller: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Unix time of the probe; null before the first.
    checked_at: Option<f64>,
}

impl From<SlurmHealth> for SlurmBody {
    fn from(h: SlurmHealth) -> Self {
        SlurmBody { reachable: h.reachable, controller: h.controller, error: h.error, checked_at: h.checked_at }
    }
}

#[derive(Serialize, JsonSchema)]
pub(super) struct Health {
    /// Always "ok": the bridge is alive if it answers at all.
    status: &'static str,
    slurm: SlurmBody,
}

/// Reads the probe's last result: no SLURM command runs per request.
async fn get_health(State(state): State<AppState>) -> Json<Health> {
    let slurm = state.slurm_health.borrow().clone();
    Json(Health { status: "ok", slurm: slurm.into() })
}

#[derive(Serialize, JsonSchema)]
pub(super) struct Ready {
    ready: bool,
    slurm: SlurmBody,
    database: String,
    /// How submissions reach SLURM: "libslurm" or "sbatch" (`--submit-via`).
    submit_via: &'static str,
}

async fn get_ready(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let slurm = state.slurm_health.borrow().clone();
    let (writable, database) = match state.store.check_writable().await {
        Ok(()) => (true, "writable".to_owned()),
        Err(e) => (false, e.to_string()),
    };
    let ready = slurm.reachable && writable;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let submit_via = state.slurm.submit_path();
    (status, Json(Ready { ready, slurm: slurm.into(), database, submit_via }))
}
