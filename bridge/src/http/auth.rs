//! `/v1/auth/*`: register, login (bridge password, or the Unix account's own
//! password through PAM, which also proves the Unix mapping), refresh
//! (rotation with reuse detection), logout (immediate revocation), me.
//! Register and login are throttled per client address and per name.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::users::UserBody;
use super::{ApiJson, AppState, AuthUser, ClientAddr};
use crate::auth::pam::PamError;
use crate::auth::throttle::{InFlight, Throttled};
use crate::auth::{self, password};
use crate::config::Registration;
use crate::store::users::{self, Role, User};
use crate::store::{now, tokens};
use crate::unix::{self, MappedBy};

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

/// The 429 for a throttled sign-in.
pub(super) fn throttled(hit: Throttled) -> ApiError {
    ApiError::TooManyRequests {
        detail: format!("too many sign-in attempts from this {}; retry later", hit.by),
        retry_after: hit.retry_after.as_secs().max(1),
    }
}

/// 429 once an address or a name has made too many attempts, or the address
/// has too many password checks in progress; else the slot to hold while
/// this request's password is checked.
fn throttle(state: &AppState, address: Option<std::net::IpAddr>, name: &str) -> Result<Option<InFlight>, ApiError> {
    state.login_throttle.check(address, Some(name)).map_err(throttled)?;
    state.login_throttle.enter(address).map_err(throttled)
}

async fn register(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    ApiJson(body): ApiJson<Register>,
) -> Result<(StatusCode, Json<UserBody>), ApiError> {
    let _slot = throttle(&state, address, &body.name)?;
    if state.settings.registration == Registration::Closed {
        return Err(ApiError::Forbidden("registration is closed; ask an administrator for an account".into()));
    }
    let role = body.role.unwrap_or(Role::User);
    if role > Role::User {
        return Err(ApiError::Forbidden("registration cannot grant a role above user".into()));
    }
    check_name("name", &body.name)?;
    check_password(&body.password)?;
    let hash = password::hash(&state.credentials, body.password, state.settings.password_cost).await?;
    let name = body.name.clone();
    let user = state
        .store
        .call(move |conn| users::create(conn, &name, &hash, role, None))
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("the name {:?} is taken", body.name)))?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    name: String,
    password: String,
    #[serde(default)]
    method: LoginMethod,
}

/// How a login proves who it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LoginMethod {
    /// The bridge account's own password.
    #[default]
    Password,
    /// The Unix account `name`'s password, checked by PAM: signs in to (or
    /// creates) the bridge account of that name, mapped to that Unix account.
    Pam,
}

#[derive(Serialize, JsonSchema)]
pub(super) struct TokenPair {
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    expires_in: u64,
    refresh_token: String,
    refresh_expires_in: u64,
}

/// A new access token and a new refresh token in `family`.
pub(super) async fn issue_pair(state: &AppState, user: &User, family: String) -> Result<TokenPair, ApiError> {
    let (access_token, _) = state.keys.issue(user.id, &user.name, user.role, &family);
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

async fn login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    ApiJson(body): ApiJson<Login>,
) -> Result<Json<TokenPair>, ApiError> {
    let _slot = throttle(&state, address, &body.name)?;
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(wrong_credentials());
    }
    let user = match body.method {
        LoginMethod::Password => password_login(&state, body).await?,
        LoginMethod::Pam => pam_login(&state, body).await?,
    };
    if user.disabled {
        return Err(ApiError::Forbidden("this account is disabled".into()));
    }
    Ok(Json(issue_pair(&state, &user, auth::random_token()).await?))
}

/// One answer for every failed sign-in, so it tells nothing about names.
fn wrong_credentials() -> ApiError {
    ApiError::Unauthorized("wrong name or password".into())
}

async fn password_login(state: &AppState, body: Login) -> Result<User, ApiError> {
    let name = body.name.clone();
    // Unknown names and accounts without a bridge password (PAM only)
    // verify against the dummy hash: the same cost, the same answer.
    let user = state
        .store
        .call(move |conn| users::by_name(conn, &name))
        .await?
        .filter(|u| u.password_hash != password::NO_PASSWORD);
    let phc = user.as_ref().map_or_else(|| state.dummy_hash.as_str().to_owned(), |u| u.password_hash.clone());
    let matches = password::verify(&state.credentials, body.password, phc).await?;
    user.filter(|_| matches).ok_or_else(wrong_credentials)
}

/// Signs in with the Unix account's own password. The proof maps the bridge
/// account of the same name to that Unix account: an existing account that
/// was not mapped (anyone could have registered the name) is taken over,
/// its bridge password cleared and its tokens revoked; an account mapped to
/// another Unix account is left alone (409).
async fn pam_login(state: &AppState, body: Login) -> Result<User, ApiError> {
    check_name("name", &body.name).map_err(|_| wrong_credentials())?;
    let service = &state.settings.pam_service;
    match auth::pam::authenticate(&state.credentials, service, &body.name, body.password).await {
        Ok(()) => {}
        Err(PamError::Denied(reason)) => {
            tracing::info!(name = %body.name, %reason, "PAM login refused");
            return Err(wrong_credentials());
        }
        Err(PamError::Busy(busy)) => return Err(busy.into()),
        Err(e @ PamError::Unavailable { .. }) => return Err(ApiError::Unavailable(e.to_string())),
    }
    // PAM proved the password; the account must also pass the mapping rules.
    unix::resolve_off_thread(&body.name, state.settings.uid_range(), MappedBy::Pam)
        .await
        .map_err(|e| ApiError::Forbidden(format!("this Unix account cannot use the bridge: {e}")))?;
    let name = body.name.clone();
    let open = state.settings.registration == Registration::Open;
    let outcome = state
        .store
        .call(move |conn| -> Result<Result<(User, bool), String>, crate::store::StoreError> {
            match users::by_name(conn, &name)? {
                Some(user) => match user.unix_mapping() {
                    Some((unix_user, _)) if unix_user == name => Ok(Ok((user, false))),
                    Some((unix_user, _)) => Ok(Err(format!(
                        "the bridge account {name:?} is mapped to the Unix account {unix_user:?}, not {name:?}"
                    ))),
                    None => {
                        let user = users::map_by_pam(conn, user.id, &name, password::NO_PASSWORD)?;
                        Ok(user.map(|u| (u, true)).ok_or_else(|| "the account vanished".to_owned()))
                    }
                },
                None if !open => Ok(Err("registration is closed; ask an administrator for an account".into())),
                None => {
                    let created =
                        users::create(conn, &name, password::NO_PASSWORD, Role::User, Some((&name, MappedBy::Pam)))?;
                    Ok(created.map(|u| (u, false)).ok_or_else(|| "the name was taken a moment ago; retry".to_owned()))
                }
            }
        })
        .await?;
    let (user, took_over) = outcome.map_err(ApiError::Conflict)?;
    if took_over {
        // Whoever held the account before the proof loses every login.
        tracing::warn!(user = %user.name, "PAM proof took over an unmapped account: its password and tokens are revoked");
        let user_id = user.id;
        let families = state.store.call(move |conn| tokens::families_of(conn, user_id)).await?;
        for family in families {
            revoke_login(state, family).await?;
        }
        state.user_cache.forget(user.id);
    }
    Ok(user)
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
        revoke_login(&state, family.clone()).await?;
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

/// Revokes a whole login: its refresh tokens, and every access token issued
/// from it (in memory at once, in the store for restarts).
async fn revoke_login(state: &AppState, family: String) -> Result<(), ApiError> {
    // No access token of this family outlives the longest access lifetime.
    let expires_at = now() + state.keys.access_ttl.as_secs_f64() + 60.0;
    {
        let family = family.clone();
        state
            .store
            .call(move |conn| {
                tokens::revoke_family(conn, &family)?;
                tokens::revoke_access_family(conn, &family, expires_at)
            })
            .await?;
    }
    state.revocations.revoke_family(family, expires_at, now());
    Ok(())
}

/// Revokes the access token at once (not at expiry), and the login it came
/// from: its refresh token and every access token issued from it. A
/// `refresh_token` in the body revokes that token's login too (it must be
/// the caller's).
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
    let other_family = {
        let jti = jti.clone();
        state
            .store
            .call(move |conn| {
                tokens::revoke_access(conn, &jti, expires_at)?;
                let Some(hash) = refresh_hash else { return Ok(None) };
                Ok(tokens::find_refresh(conn, &hash)?.filter(|t| t.user_id == user_id).map(|t| t.family))
            })
            .await?
    };
    state.revocations.revoke_token(jti, expires_at, now());
    if !caller.claims.fam.is_empty() {
        revoke_login(&state, caller.claims.fam.clone()).await?;
    }
    if let Some(family) = other_family.filter(|f| *f != caller.claims.fam) {
        revoke_login(&state, family).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn me(caller: AuthUser) -> Json<UserBody> {
    Json(caller.user.into())
}
