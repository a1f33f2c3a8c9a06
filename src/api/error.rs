//! The one error type of the HTTP API and its mapping to status codes, in one place.
//!
//! Every failure on every route, including the framework's own (malformed JSON, unknown
//! routes, wrong methods, oversized bodies, timeouts), leaves as
//! `{"error":{"code":"...","message":"..."}}` with the status below; so do the answers hyper
//! writes by itself to a request head it cannot parse ([`ApiError::for_unparsed_head`],
//! put on the wire by `server::conn`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::labeling::ServiceError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not syntactically valid JSON (or not UTF-8).
    #[error("{0}")]
    InvalidJson(String),
    /// Well-formed JSON that breaks the schema or a limit on values.
    #[error("{0}")]
    Validation(String),
    #[error("missing or wrong API key")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The request body stalled for longer than --body-timeout-s.
    #[error("{0}")]
    RequestTimeout(String),
    /// The request target is longer than hyper accepts (answered before any route runs).
    #[error("{0}")]
    UriTooLong(String),
    /// The request head has too many or too large header fields (answered before any route).
    #[error("{0}")]
    HeadersTooLarge(String),
    /// A request line or header that is not HTTP/1.x (answered before any route runs).
    #[error("{0}")]
    BadRequest(String),
    /// The batching queue is full: retry after `retry_after` seconds.
    #[error("{message}")]
    Overloaded { message: String, retry_after: u32 },
    /// Not ready yet (loading) or draining for shutdown.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Overloaded { .. } | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::Validation(_) => "validation_error",
            Self::Unauthorized => "unauthorized",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::RequestTimeout(_) => "request_timeout",
            Self::UriTooLong(_) => "uri_too_long",
            Self::HeadersTooLarge(_) => "headers_too_large",
            Self::BadRequest(_) => "bad_request",
            Self::Overloaded { .. } => "overloaded",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// What hyper answers with `status` by itself, with an empty body, when it cannot parse
    /// a request head (before any route or middleware runs): `None` for any other status.
    pub fn for_unparsed_head(status: u16) -> Option<ApiError> {
        Some(match status {
            400 => {
                Self::BadRequest("the request line or a header is malformed (not HTTP/1.x)".into())
            }
            414 => Self::UriTooLong(
                "the request target (path and query) is longer than 65534 bytes".into(),
            ),
            431 => Self::HeadersTooLarge(
                "the request head is too large: more than 100 header fields, or more than 400 KiB"
                    .into(),
            ),
            _ => return None,
        })
    }

    /// The JSON body, also used for per-line errors of the NDJSON stream.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
            },
        }
    }
}

/// `{"error":{"code","message"}}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "validation_error", "message": "depth 4 is outside 1..=3"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: invalid_json, validation_error, unauthorized, not_found,
    /// method_not_allowed, payload_too_large, unsupported_media_type, request_timeout,
    /// uri_too_long, headers_too_large, bad_request, overloaded, unavailable, internal.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Validation(m) => Self::Validation(m),
            ServiceError::Overloaded {
                message,
                retry_after,
            } => Self::Overloaded {
                message,
                retry_after,
            },
            ServiceError::Unavailable(m) => Self::Unavailable(m),
            ServiceError::Internal(m) => Self::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The one place an error is logged, at the level it deserves: a server fault is an
        // error; a 503 while loading, draining or overloaded is what a probe or a client
        // expects to see now and then, not a fault.
        match &self {
            Self::Internal(message) => tracing::error!(%message, "internal error"),
            Self::Unavailable(message) => tracing::debug!(%message, "unavailable"),
            _ => {}
        }
        let mut resp = (self.status(), Json(self.body())).into_response();
        if let Self::Overloaded { retry_after, .. } = &self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        if matches!(self, Self::Unauthorized) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}
