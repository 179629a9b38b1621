//! `/v1/policy`: the scheduling policies in force (anyone signed in may
//! read them; only an admin may change them).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::Serialize;

use super::error::ApiError;
use super::{ApiJson, AppState, AuthUser};
use crate::scheduling::Policy;
use crate::store::users::Role;

pub fn router() -> Router<AppState> {
    Router::new().route("/policy", get(get_policy).put(put_policy))
}

/// The policies in force and where they came from.
#[derive(Serialize, JsonSchema)]
pub(super) struct PolicyBody {
    #[serde(flatten)]
    policy: Policy,
    /// `config` (the bridge's flags or config file) or `admin` (PUT).
    source: &'static str,
    /// The admin who set it, for `admin`.
    set_by: Option<String>,
    set_at: Option<f64>,
}

async fn get_policy(_caller: AuthUser, State(state): State<AppState>) -> Result<Json<PolicyBody>, ApiError> {
    let stored = state.store.read(crate::store::policy::load).await?;
    let policy = state.submitter.policy.get();
    Ok(Json(match stored {
        Some((_, by, at)) => PolicyBody { policy, source: "admin", set_by: Some(by), set_at: Some(at) },
        None => PolicyBody { policy, source: "config", set_by: None, set_at: None },
    }))
}

/// Replaces the policies at once: routing applies to the next submission,
/// ordering from the poller's next round. Kept across restarts.
async fn put_policy(
    caller: AuthUser,
    State(state): State<AppState>,
    ApiJson(policy): ApiJson<Policy>,
) -> Result<Json<PolicyBody>, ApiError> {
    caller.require(Role::Admin)?;
    policy.check().map_err(|e| ApiError::Invalid { field: e.field, detail: e.detail })?;
    let by = caller.user.name.clone();
    let saved = policy.clone();
    let at = state.store.call(move |conn| crate::store::policy::save(conn, &saved, &by)).await?;
    tracing::info!(
        admin = %caller.user.name,
        routing = policy.routing.as_str(),
        ordering = policy.ordering.as_str(),
        "scheduling policy changed"
    );
    state.submitter.policy.set(policy.clone());
    Ok(Json(PolicyBody { policy, source: "admin", set_by: Some(caller.user.name.clone()), set_at: Some(at) }))
}
