//! `/v1/users`: account administration (admins only), including the Unix
//! mapping an admin vouches for.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::{ApiJson, AppState, AuthUser};
use crate::error::ApiError;
use crate::store::tokens;
use crate::store::users::{self, Role, User, UserChange};
use crate::unix::{self, MappedBy};

pub fn router() -> Router<AppState> {
    Router::new().route("/users", get(list_users)).route("/users/{name}", get(get_user).patch(update_user))
}

async fn list_users(caller: AuthUser, State(state): State<AppState>) -> Result<Json<Vec<User>>, ApiError> {
    caller.require(Role::Admin)?;
    Ok(Json(state.store.call(|conn| users::list(conn)).await?))
}

async fn get_user(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<User>, ApiError> {
    caller.require(Role::Admin)?;
    let missing = ApiError::NotFound(format!("no user {name:?}"));
    state.store.call(move |conn| users::by_name(conn, &name)).await?.map(Json).ok_or(missing)
}

async fn update_user(
    caller: AuthUser,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(change): ApiJson<UserChange>,
) -> Result<Json<User>, ApiError> {
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
    Ok(Json(user))
}
