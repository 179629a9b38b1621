//! `/v1/auth/*`: register, login, refresh (rotation with reuse detection),
//! logout (immediate revocation), me.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiJson, AppState, AuthUser};
use crate::auth::{self, password};
use crate::config::Registration;
use crate::error::ApiError;
use crate::store::users::{self, Role, User};
use crate::store::{now, tokens};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/me", get(me))
}

/// Longest password accepted: argon2 takes any length, but hashing megabytes
/// per login is a denial of service.
const MAX_PASSWORD_BYTES: usize = 1024;
const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Register {
    name: String,
    password: String,
    #[serde(default)]
    role: Option<Role>,
}

/// Account names follow Unix user names (they map to one by default):
/// a lowercase letter or `_`, then up to 31 of `[a-z0-9_-]`.
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    let mut chars = name.chars();
    let valid_first = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !valid_first || !valid_rest || name.len() > 32 {
        return Err(ApiError::invalid(
            field,
            "must be 1-32 characters: a lowercase letter or _, then lowercase letters, digits, _ or -",
        ));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), ApiError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid("password", format!("must be at most {MAX_PASSWORD_BYTES} bytes")));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid("password", format!("must be at least {MIN_PASSWORD_CHARS} characters")));
    }
    Ok(())
}

async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Register>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    if state.settings.registration == Registration::Closed {
        return Err(ApiError::Forbidden("registration is closed; ask an administrator for an account".into()));
    }
    let role = body.role.unwrap_or(Role::User);
    if role > Role::User {
        return Err(ApiError::Forbidden("registration cannot grant a role above user".into()));
    }
    check_name("name", &body.name)?;
    check_password(&body.password)?;
    let hash = password::hash(body.password, state.settings.password_cost).await?;
    let name = body.name.clone();
    let user = state
        .store
        .call(move |conn| users::create(conn, &name, &hash, role, None))
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("the name {:?} is taken", body.name)))?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    name: String,
    password: String,
}

#[derive(Serialize)]
struct TokenPair {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    refresh_expires_in: u64,
}

/// A new access token and a new refresh token in `family`.
async fn issue_pair(state: &AppState, user: &User, family: String) -> Result<TokenPair, ApiError> {
    let (access_token, _) = state.keys.issue(user.id, &user.name, user.role);
    let refresh_token = auth::random_token();
    let hash = auth::token_hash(&refresh_token);
    let refresh_ttl = state.settings.refresh_ttl;
    let user_id = user.id;
    state
        .store
        .call(move |conn| tokens::insert_refresh(conn, &hash, user_id, &family, now() + refresh_ttl.as_secs_f64()))
        .await?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: state.keys.access_ttl.as_secs(),
        refresh_token,
        refresh_expires_in: refresh_ttl.as_secs(),
    })
}

async fn login(State(state): State<AppState>, ApiJson(body): ApiJson<Login>) -> Result<Json<TokenPair>, ApiError> {
    let denied = || ApiError::Unauthorized("wrong name or password".into());
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(denied());
    }
    let name = body.name.clone();
    let user = state.store.call(move |conn| users::by_name(conn, &name)).await?;
    let phc = user.as_ref().map_or_else(|| state.dummy_hash.as_str().to_owned(), |u| u.password_hash.clone());
    let matches = password::verify(body.password, phc).await?;
    let user = match user {
        Some(user) if matches => user,
        _ => return Err(denied()),
    };
    if user.disabled {
        return Err(ApiError::Forbidden("this account is disabled".into()));
    }
    Ok(Json(issue_pair(&state, &user, auth::random_token()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Refresh {
    refresh_token: String,
}

async fn refresh(State(state): State<AppState>, ApiJson(body): ApiJson<Refresh>) -> Result<Json<TokenPair>, ApiError> {
    let hash = auth::token_hash(&body.refresh_token);
    let found = {
        let hash = hash.clone();
        state.store.call(move |conn| tokens::find_refresh(conn, &hash)).await?
    };
    let token = found.ok_or_else(|| ApiError::Unauthorized("unknown refresh token".into()))?;
    if token.revoked {
        return Err(ApiError::Unauthorized("refresh token was revoked".into()));
    }
    let family = token.family.clone();
    let reuse = || async {
        let family = family.clone();
        state.store.call(move |conn| tokens::revoke_family(conn, &family)).await?;
        tracing::warn!(user_id = token.user_id, "refresh token reuse: revoked its family");
        Err::<Json<TokenPair>, ApiError>(ApiError::Unauthorized(
            "refresh token was already used; every token of this login is now revoked".into(),
        ))
    };
    if token.used {
        return reuse().await;
    }
    if token.expires_at < now() {
        return Err(ApiError::Unauthorized("refresh token expired; log in again".into()));
    }
    let marked = state.store.call(move |conn| tokens::mark_used(conn, &hash)).await?;
    if !marked {
        // Another request rotated it a moment ago: that, too, is a reuse.
        return reuse().await;
    }
    let user_id = token.user_id;
    let user = state
        .store
        .call(move |conn| users::by_id(conn, user_id))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the token's account no longer exists".into()))?;
    if user.disabled {
        return Err(ApiError::Forbidden("this account is disabled".into()));
    }
    Ok(Json(issue_pair(&state, &user, token.family).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Logout {
    refresh_token: Option<String>,
}

/// Revokes the access token at once (not at expiry) and, if given, the
/// refresh token's whole family.
async fn logout(
    State(state): State<AppState>,
    caller: AuthUser,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    // The body is optional: empty, or {"refresh_token": "..."}.
    let body: Option<Logout> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", e.to_string()))?)
    };
    let jti = caller.claims.jti.clone();
    let expires_at = caller.claims.exp as f64;
    let refresh_hash = body.and_then(|b| b.refresh_token).map(|t| auth::token_hash(&t));
    let user_id = caller.user.id;
    {
        let jti = jti.clone();
        state
            .store
            .call(move |conn| {
                tokens::revoke_access(conn, &jti, expires_at)?;
                if let Some(hash) = refresh_hash {
                    if let Some(token) = tokens::find_refresh(conn, &hash)? {
                        if token.user_id == user_id {
                            tokens::revoke_family(conn, &token.family)?;
                        }
                    }
                }
                Ok(())
            })
            .await?;
    }
    state.revocations.insert(jti);
    Ok(StatusCode::NO_CONTENT)
}

async fn me(caller: AuthUser) -> Json<User> {
    Json(caller.user)
}
