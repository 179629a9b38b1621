//! Sign-in through the site's OpenID providers (issue #15):
//! `GET /v1/auth/oidc` (the providers a client may sign in with, and their
//! endpoints), `POST /v1/auth/oidc/token` (a provider's access token in, a
//! bridge login out: the dashboard and `odyssey login --sso` use it), and
//! `authenticate`, which `AuthUser` calls for a provider's bearer token on
//! any endpoint. Verification is `auth::oidc`'s; accounts are the store's.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::auth::{check_name, issue_pair, throttled, TokenPair};
use super::error::ApiError;
use super::{ApiJson, AppState, ClientAddr};
use crate::auth::jwt::Claims;
use crate::auth::oidc::{Issuer, OidcError, Verified};
use crate::auth::{self, password};
use crate::store::users::{self, OidcClaims, User};
use crate::unix::{self, MappedBy};

pub fn router() -> Router<AppState> {
    Router::new().route("/auth/oidc", get(providers)).route("/auth/oidc/token", post(exchange))
}

/// Longest token accepted (Keycloak's with many groups are a few KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

impl From<OidcError> for ApiError {
    fn from(e: OidcError) -> ApiError {
        match e {
            OidcError::Invalid(why) => ApiError::Unauthorized(why),
            OidcError::NoRole(why) => ApiError::Forbidden(why),
            OidcError::Unavailable(detail, retry_after) => ApiError::ProviderDown { detail, retry_after },
        }
    }
}

/// The account a provider's token names, verified and brought up to date,
/// and the claims `AuthUser` carries (the token's hash as its id, so logout
/// revokes exactly this token).
pub async fn authenticate(state: &AppState, issuer: &Issuer, token: &str) -> Result<(User, Claims), ApiError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::Unauthorized(format!("token longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let jti = format!("oidc:{}", auth::token_hash(token));
    if state.revocations.is_revoked(&jti, "") {
        return Err(ApiError::Unauthorized("access token was revoked (logged out)".into()));
    }
    let verified = state.oidc.verify(issuer, token).await?;
    let user = account(state, issuer, &verified).await?;
    let claims = Claims {
        sub: user.id.to_string(),
        name: user.name.clone(),
        role: user.role,
        jti,
        fam: String::new(),
        iss: verified.issuer.clone(),
        aud: issuer.config.audience.clone(),
        iat: verified.issued_at,
        nbf: verified.issued_at,
        exp: verified.expires_at,
    };
    Ok((user, claims))
}

/// Whether the stored account already says what the token says.
fn in_sync(user: &User, verified: &Verified) -> bool {
    let (unix_user, mapped_by) = user.mapping_after_oidc(verified.unix_user.as_deref());
    user.role == verified.role && unix_user == user.unix_user && mapped_by == user.unix_mapped_by
}

/// The provider identity's account: from the caches when nothing changed,
/// else created (first sign-in) or updated in one transaction.
async fn account(state: &AppState, issuer: &Issuer, verified: &Verified) -> Result<User, ApiError> {
    let key = (verified.issuer.clone(), verified.subject.clone());
    let known = state.oidc_accounts.read().unwrap_or_else(|e| e.into_inner()).get(&key).copied();
    let current = match known {
        Some(id) => super::extract::user_by_id(state, id).await?,
        None => None,
    };
    let user = match current {
        Some(user) if in_sync(&user, verified) => user,
        current => {
            // The name an account would be created with: the same rule as
            // every account name (it may become a Unix-looking name in logs
            // and paths).
            check_name("name", &verified.name).map_err(|_| {
                ApiError::Forbidden(format!(
                    "{}'s {} claim {:?} is not a usable account name (1-32 of a-z, 0-9, _ and -, starting with a \
                     letter or _); ask an administrator to use another claim (username_claim)",
                    verified.issuer, issuer.config.username_claim, verified.name
                ))
            })?;
            let admin_mapped = current.as_ref().is_some_and(|u| u.unix_mapped_by == Some(MappedBy::Admin));
            if let (Some(unix_user), false) = (&verified.unix_user, admin_mapped) {
                let claim = issuer.config.unix_user_claim.as_deref().unwrap_or_default();
                unix::resolve_off_thread(unix_user, state.settings.uid_range(), MappedBy::Oidc).await.map_err(|e| {
                    ApiError::Forbidden(format!(
                        "the Unix account {unix_user:?} named by {}'s {claim} claim cannot run jobs here: {e}",
                        verified.issuer
                    ))
                })?;
            }
            let v = verified.clone();
            let user = state
                .store
                .call(move |conn| {
                    let claims = OidcClaims {
                        issuer: &v.issuer,
                        subject: &v.subject,
                        name: &v.name,
                        role: v.role,
                        unix_user: v.unix_user.as_deref(),
                    };
                    users::sign_in_oidc(conn, &claims, password::NO_PASSWORD)
                })
                .await?
                .ok_or_else(|| {
                    ApiError::Conflict(format!(
                        "the account name {:?} ({}'s {} claim) belongs to an account that does not sign in through \
                         {}; an administrator must rename one of them",
                        verified.name, verified.issuer, issuer.config.username_claim, verified.issuer
                    ))
                })?;
            if current.is_some() {
                tracing::info!(user = %user.name, role = user.role.as_str(), unix_user = ?user.unix_user,
                    "account updated from the OIDC provider's claims");
            } else {
                tracing::info!(user = %user.name, issuer = %verified.issuer, "OIDC identity signed in");
            }
            state.user_cache.forget(user.id);
            state.oidc_accounts.write().unwrap_or_else(|e| e.into_inner()).insert(key, user.id);
            user
        }
    };
    if user.disabled {
        return Err(ApiError::Forbidden("this account is disabled".into()));
    }
    Ok(user)
}

/// One provider a client can sign in with.
#[derive(Serialize, JsonSchema)]
pub(super) struct Provider {
    issuer: String,
    /// The public client to use (authorization code with PKCE, or the
    /// device grant).
    client_id: String,
    scopes: String,
    /// False when the provider's discovery document cannot be fetched now
    /// (`error` says why); the endpoints are then null.
    available: bool,
    error: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    device_authorization_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub(super) struct Providers {
    providers: Vec<Provider>,
}

/// The providers with a client for interactive sign-in (issuers configured
/// for bearer tokens only are not listed).
async fn providers(State(state): State<AppState>) -> Json<Providers> {
    let mut providers = Vec::new();
    for issuer in state.oidc.issuers() {
        let Some(client_id) = issuer.config.client_id.clone() else { continue };
        let discovery = state.oidc.discovery(issuer).await;
        let d = discovery.as_ref().ok();
        providers.push(Provider {
            issuer: issuer.config.issuer.clone(),
            client_id,
            scopes: issuer.config.scopes.clone(),
            available: d.is_some(),
            error: discovery.as_ref().err().map(ToString::to_string),
            authorization_endpoint: d.and_then(|d| d.authorization_endpoint.clone()),
            token_endpoint: d.and_then(|d| d.token_endpoint.clone()),
            device_authorization_endpoint: d.and_then(|d| d.device_authorization_endpoint.clone()),
            end_session_endpoint: d.and_then(|d| d.end_session_endpoint.clone()),
        });
    }
    Json(Providers { providers })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Exchange {
    /// An access token from a configured provider.
    token: String,
}

/// A provider's token for a bridge login (access and refresh token, as a
/// password login gives): logout ends it like any other.
async fn exchange(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    ApiJson(body): ApiJson<Exchange>,
) -> Result<Json<TokenPair>, ApiError> {
    state.login_throttle.check(address, None).map_err(throttled)?;
    let token = body.token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::invalid("token", format!("must be at most {MAX_TOKEN_BYTES} bytes")));
    }
    let issuer = state.oidc.issuer_of(token).ok_or_else(|| {
        ApiError::Unauthorized("the token is not from an OpenID provider this bridge is configured to trust".into())
    })?;
    let (user, _) = authenticate(&state, issuer, token).await?;
    Ok(Json(issue_pair(&state, &user, auth::random_token()).await?))
}
