//! Every error the API answers with, rendered as RFC 9457 problem+json.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body or query could not be read at all (bad JSON syntax).
    #[error("{0}")]
    BadRequest(String),
    /// 422: a well-formed request with a value that is not acceptable.
    #[error("{field}: {detail}")]
    Invalid { field: String, detail: String },
    /// 401: no valid credentials (missing, expired, tampered or revoked token).
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource, or one the caller may not see.
    #[error("{0}")]
    NotFound(String),
    /// 405: the resource exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with the resource's state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the configured limit.
    #[error("request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// 422: the same Idempotency-Key came with a different request body.
    #[error("Idempotency-Key {0:?} was used for a different request")]
    IdempotencyMismatch(String),
    /// 422: SLURM refused the submission; its own reason is the detail.
    #[error("SLURM refused the job: {0}")]
    SlurmRejected(String),
    /// 429: too many requests; retry after the given seconds.
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after: u64 },
    /// 503: SLURM (or another dependency) does not answer now.
    #[error("{0}")]
    Unavailable(String),
    /// 503: slurmctld does not answer; retry after the given seconds (the
    /// probe's interval: by then the bridge knows again).
    #[error("{detail}")]
    SlurmDown { detail: String, retry_after: u64 },
    /// 503: an OpenID provider's keys are needed and cannot be fetched;
    /// retry once the bridge may fetch them again.
    #[error("{detail}")]
    ProviderDown { detail: String, retry_after: u64 },
    /// 503: the bridge is saturated (every password-check thread busy and
    /// the queue full); retry after the given seconds.
    #[error("{detail}")]
    Overloaded { detail: String, retry_after: u64 },
    /// 500: the database failed; details are logged, not sent.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// 500: anything else unexpected; details are logged, not sent.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// RFC 9457 section 3.1 members, plus `field` for validation errors.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: String,
    /// The offending field, for 422 validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

/// Put into the response extensions of a 500, so the logging middleware can
/// record what the client is not told.
#[derive(Debug, Clone)]
pub struct InternalErrorMessage(pub String);

impl ApiError {
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> ApiError {
        ApiError::Invalid { field: field.into(), detail: detail.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } | ApiError::IdempotencyMismatch(_) | ApiError::SlurmRejected(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_)
            | ApiError::Overloaded { .. }
            | ApiError::SlurmDown { .. }
            | ApiError::ProviderDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // The actual error of a 500 isn't returned to the client: it may name
        // files, SQL or internals. It is logged with the request's span.
        let internal = matches!(self, ApiError::Store(_) | ApiError::Internal(_));
        let detail = if internal { "internal error; see the bridge log".to_owned() } else { self.to_string() };
        let problem = Problem {
            // "about:blank": the status code says what kind (RFC 9457 section 4.2.1).
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            field: match &self {
                ApiError::Invalid { field, .. } => Some(field),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        match &self {
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Overloaded { retry_after, .. }
            | ApiError::SlurmDown { retry_after, .. }
            | ApiError::ProviderDown { retry_after, .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            _ => {}
        }
        if internal {
            response.extensions_mut().insert(InternalErrorMessage(format!("{:#}", anyhow::Error::from(self))));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(e) => ApiError::invalid("body", e.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::BadRequest("expected a body with Content-Type: application/json".into())
            }
            JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::TooLarge { limit: 0 }
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid("query", rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::NotFound(rejection.body_text())
    }
}

impl From<crate::auth::pool::Busy> for ApiError {
    fn from(e: crate::auth::pool::Busy) -> Self {
        ApiError::Overloaded { detail: e.to_string(), retry_after: 1 }
    }
}

impl From<crate::auth::password::PasswordError> for ApiError {
    fn from(e: crate::auth::password::PasswordError) -> Self {
        match e {
            crate::auth::password::PasswordError::Busy(busy) => busy.into(),
            other => ApiError::Internal(other.into()),
        }
    }
}
