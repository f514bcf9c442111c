//! The one error type of the HTTP API. The client gets a stable `kind` and a sentence to show; the server maps
//! each kind to a 4xx/5xx status and keeps internal details in its log.

use leptos::server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};
use serde::{Deserialize, Serialize};

use crate::shared::domain::InputError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input broke a rule (empty, too long, control characters): 422.
    InvalidInput,
    /// The request itself was malformed (a missing or non-numeric field): 400.
    BadRequest,
    /// The ticket is missing, forged, altered or from another session group: 403.
    BadTicket,
    /// A sign-in is needed and none was given, or the token given was refused (bad, expired, not for here): 401.
    Unauthorized,
    /// The sign-in is valid but does not allow this (a token's grants do not cover the feed): 403.
    Forbidden,
    /// Too many sends too fast from this ticket or session group: 429.
    RateLimited,
    /// The request body is larger than the server takes: 413.
    TooLarge,
    /// The request was not received and answered in time: 408.
    TimedOut,
    /// This session group already has as many event streams open as allowed: 429.
    TooManyStreams,
    /// No such API endpoint: 404.
    NotFound,
    /// The endpoint does not take this method: 405.
    MethodNotAllowed,
    /// The server could not do it now (store failure, or full): 503.
    Unavailable,
    /// The server could not be reached or answered something unreadable (client side only).
    Network,
}

impl ErrorKind {
    /// Seconds a client should wait before trying again (the `Retry-After` header), for the kinds that pass.
    pub fn retry_after_secs(self) -> Option<u32> {
        match self {
            Self::RateLimited => Some(1),
            Self::TooManyStreams | Self::Unavailable => Some(5),
            _ => None,
        }
    }

    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 13] = [
        Self::InvalidInput,
        Self::BadRequest,
        Self::BadTicket,
        Self::Unauthorized,
        Self::Forbidden,
        Self::RateLimited,
        Self::TooLarge,
        Self::TimedOut,
        Self::TooManyStreams,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Unavailable,
        Self::Network,
    ];

    /// The kind serialized as `code`.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.code() == code)
    }

    /// The name it is serialized as.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::BadRequest => "bad_request",
            Self::BadTicket => "bad_ticket",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::TooLarge => "too_large",
            Self::TimedOut => "timed_out",
            Self::TooManyStreams => "too_many_streams",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unavailable => "unavailable",
            Self::Network => "network",
        }
    }
}

/// Serialized as `{"kind": "...", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// Seconds to wait when the server knows better than the kind's usual value (a shared send budget says when
    /// it refills); only the `Retry-After` header carries it, never the JSON body.
    #[serde(skip)]
    retry_after_secs: Option<u32>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), retry_after_secs: None }
    }

    /// The same error, with `Retry-After: secs` (at least 1) instead of its kind's usual value.
    pub fn with_retry_after(self, secs: u32) -> Self {
        Self { retry_after_secs: Some(secs.max(1)), ..self }
    }

    /// The HTTP status the server answers this error with.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::InvalidInput => 422,
            ErrorKind::BadRequest => 400,
            ErrorKind::BadTicket | ErrorKind::Forbidden => 403,
            ErrorKind::Unauthorized => 401,
            ErrorKind::RateLimited | ErrorKind::TooManyStreams => 429,
            ErrorKind::TooLarge => 413,
            ErrorKind::TimedOut => 408,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Unavailable => 503,
            ErrorKind::Network => 502,
        }
    }
}

/// On the server an error is its status with its JSON body, wherever it is answered (server functions, the event
/// stream's refusals, the HTTP layers' own).
#[cfg(feature = "ssr")]
impl ApiError {
    pub fn http_status(&self) -> axum::http::StatusCode {
        axum::http::StatusCode::from_u16(self.status()).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `Retry-After` value of this error: its own if it has one, else its kind's, if any.
    pub fn retry_after(&self) -> Option<axum::http::HeaderValue> {
        self.retry_after_secs.or(self.kind.retry_after_secs()).map(axum::http::HeaderValue::from)
    }
}

#[cfg(feature = "ssr")]
impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        let mut response = (self.http_status(), axum::Json(&self)).into_response();
        if let Some(header) = self.retry_after() {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, header);
        }
        response
    }
}

impl From<InputError> for ApiError {
    fn from(err: InputError) -> Self {
        Self::new(ErrorKind::InvalidInput, err.to_string())
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(detail) | ServerFnErrorErr::MissingArg(detail) => {
                Self::new(ErrorKind::BadRequest, format!("Malformed request: {detail}"))
            }
            // On the server, the request could not be read or decoded: the client's fault, a 400.
            ServerFnErrorErr::Request(detail) | ServerFnErrorErr::Deserialization(detail) if cfg!(feature = "ssr") => {
                Self::new(ErrorKind::BadRequest, format!("Malformed request: {detail}"))
            }
            ServerFnErrorErr::Request(_) => {
                Self::new(ErrorKind::Network, "Could not reach the server; check the connection and try again.")
            }
            other => Self::new(ErrorKind::Network, format!("Unexpected answer from the server: {other}")),
        }
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn retry_after_comes_from_the_kind_one_value_per_kind() {
        let retry_after = |kind| {
            let response = ApiError::new(kind, "x").into_response();
            response.headers().get("retry-after").map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(retry_after(ErrorKind::RateLimited).as_deref(), Some("1"));
        assert_eq!(retry_after(ErrorKind::TooManyStreams).as_deref(), Some("5"));
        assert_eq!(retry_after(ErrorKind::Unavailable).as_deref(), Some("5"));
        assert_eq!(retry_after(ErrorKind::BadRequest), None);
        let own = ApiError::new(ErrorKind::RateLimited, "x").with_retry_after(7).into_response();
        assert_eq!(own.headers().get("retry-after").unwrap(), "7");
        let json = serde_json::to_value(ApiError::new(ErrorKind::RateLimited, "x").with_retry_after(7)).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "rate_limited", "message": "x"}), "the body is unchanged");
    }
}
