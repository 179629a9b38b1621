//! Extractors: `AuthUser` (a valid, unrevoked access token of an enabled
//! account) and `ApiJson` (JSON bodies whose errors are problem+json).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::auth::jwt::Claims;
use crate::store::users::{self, Role, User};

/// The caller, authenticated. Handlers that need a login take this.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub claims: Claims,
}

impl AuthUser {
    /// 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.user.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role; you are {}",
                role.as_str(),
                self.user.role.as_str()
            )))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token>".into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::Unauthorized("Authorization must be 'Bearer <token>'".into()))?;
        let token = token.trim();
        if let Some(issuer) = state.oidc.issuer_of(token) {
            // A token of the site's OpenID provider (issue #15).
            let (user, claims) = super::oidc::authenticate(state, issuer, token).await?;
            tracing::Span::current().record("user", user.name.as_str());
            return Ok(AuthUser { user, claims });
        }
        let claims =
            state.keys.verify(token).map_err(|e| ApiError::Unauthorized(format!("invalid access token: {e}")))?;
        if state.revocations.is_revoked(&claims.jti, &claims.fam) {
            return Err(ApiError::Unauthorized("access token was revoked (logged out)".into()));
        }
        let id: i64 = claims.sub.parse().map_err(|_| ApiError::Unauthorized("invalid access token subject".into()))?;
        let user = user_by_id(state, id)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the token's account no longer exists".into()))?;
        // The request's log lines name who made it.
        tracing::Span::current().record("user", user.name.as_str());
        if user.disabled {
            return Err(ApiError::Forbidden("this account is disabled".into()));
        }
        Ok(AuthUser { user, claims })
    }
}

/// An account by id, from the user cache when it holds it, else from the
/// store (and then cached).
pub(super) async fn user_by_id(state: &AppState, id: i64) -> Result<Option<User>, ApiError> {
    if let Some(user) = state.user_cache.get(id) {
        return Ok(Some(user));
    }
    let generation = state.user_cache.generation();
    let user = state.store.read(move |conn| users::by_id(conn, id)).await?;
    if let Some(user) = &user {
        state.user_cache.put(user.clone(), generation);
    }
    Ok(user)
}

/// `axum::Json`, with every rejection rendered as problem+json and the
/// body limit named in the 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::TooLarge { limit: state.settings.limits.max_body_bytes })
            }
            Err(rejection) => Err(rejection.into()),
        }
    }
}

/// `axum::extract::Query`, with a bad query string as a 422 problem.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// The client's address from the connection (not from headers a client
/// could forge); `None` where the router runs without a socket (tests).
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        let info = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(ClientAddr(info.map(|info| info.0.ip())))
    }
}
