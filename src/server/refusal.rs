//! Refusals made by the HTTP layers themselves (the body limit's 413, the request timeout's 408) answered in the
//! API's JSON error shape, so the page shows their sentence like any other refusal.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::shared::error::{ApiError, ErrorKind};

/// Middleware, outside the body limit and the timeout; `max_bytes` is the body limit, named in the sentence.
pub async fn as_api_errors(State(max_bytes): State<usize>, request: Request, next: Next) -> Response {
    let writes = request.method() == Method::POST && request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    if writes {
        // A join's ticket and a send's answer belong to this tab alone: no cache keeps them.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let already_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let error = match response.status() {
        _ if already_json => return response,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            ErrorKind::TooLarge,
            format!("That request is larger than this server takes ({max_bytes} bytes)."),
        ),
        StatusCode::REQUEST_TIMEOUT => {
            ApiError::new(ErrorKind::TimedOut, "The request took too long to arrive or to answer; try again.")
        }
        _ => return response,
    };
    error.into_response()
}
