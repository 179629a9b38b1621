//! `/v1/users`: account administration (admins only), including the Unix
//! mapping an admin vouches for.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::Serialize;

use super::error::ApiError;
use super::{ApiJson, AppState, AuthUser};
use crate::store::tokens;
use crate::store::users::{self, Role, User, UserChange};
use crate::unix::{self, MappedBy};

/// An account as the API shows it (never its password hash).
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "User")]
pub struct UserBody {
    id: i64,
    name: String,
    role: Role,
    /// The Unix account jobs run as; null: not mapped, so no jobs.
    unix_user: Option<String>,
    /// Who set `unix_user`: an admin, or the user's PAM proof.
    unix_mapped_by: Option<MappedBy>,
    disabled: bool,
    created_at: f64,
}

impl From<User> for UserBody {
    fn from(user: User) -> Self {
        UserBody {
            id: user.id,
            name: user.name,
            role: user.role,
            unix_user: user.unix_user,
            unix_mapped_by: user.unix_mapped_by,
            disabled: user.disabled,
            created_at: user.created_at,
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/users", get(list_users)).route("/users/{name}", get(get_user).patch(update_user))
}

async fn list_users(caller: AuthUser, State(state): State<AppState>) -> Result<Json<Vec<UserBody>>, ApiError> {
    caller.require(Role::Admin)?;
    let users = state.store.read(users::list).await?;
    Ok(Json(users.into_iter().map(UserBody::from).collect()))
}

async fn get_user(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<UserBody>, ApiError> {
    caller.require(Role::Admin)?;
    let missing = ApiError::NotFound(format!("no user {name:?}"));
    state.store.read(move |conn| users::by_name(conn, &name)).await?.map(|u| Json(u.into())).ok_or(missing)
}

async fn update_user(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(change): ApiJson<UserChange>,
) -> Result<Json<UserBody>, ApiError> {
    caller.require(Role::Admin)?;
    if let Some(Some(unix_user)) = &change.unix_user {
        // An admin's mapping: still never root, never outside the uid range;
        // an account without a login shell is allowed (a deliberate act).
        super::auth::check_name("unix_user", unix_user)?;
        unix::resolve_off_thread(unix_user, state.settings.uid_range(), MappedBy::Admin)
            .await
            .map_err(|e| ApiError::invalid("unix_user", e.to_string()))?;
    }
    if name == caller.user.name && (change.role.is_some_and(|r| r != Role::Admin) || change.disabled == Some(true)) {
        return Err(ApiError::Conflict("an admin cannot demote or disable their own account".into()));
    }
    let missing = ApiError::NotFound(format!("no user {name:?}"));
    let user = state.store.call(move |conn| users::update(conn, &name, &change)).await?.ok_or(missing)?;
    state.user_cache.forget(user.id);
    if user.disabled {
        let id = user.id;
        state.store.call(move |conn| tokens::revoke_user(conn, id)).await?;
    }
    Ok(Json(user.into()))
}
