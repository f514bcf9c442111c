//! Client faults answered in the API's JSON error shape with their documented 4xx, never a 500: the HTTP layers'
//! own refusals (the body limit's 413, the request timeout's 408, a 404 or 405 under `/api/`), forms the
//! server-function layer would fail on (invalid UTF-8 once percent-decoded, a field given twice, a bracketed name, a
//! chunked body over the limit), which are checked here before it sees them whatever their `Content-Type`, and any
//! other argument a server function could not decode (its 500 becomes the error's own 4xx).

use std::collections::HashSet;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::shared::error::{ApiError, ErrorKind};

fn too_large(max_bytes: usize) -> ApiError {
    ApiError::new(ErrorKind::TooLarge, format!("That request is larger than this server takes ({max_bytes} bytes)."))
}

/// A refusal of the API for backends and moderators (`Authorization: Bearer`): the error as the API answers it,
/// and on a 401 the scheme that would be accepted (`WWW-Authenticate: Bearer`).
pub fn bearer_refused(err: ApiError) -> Response {
    let unauthorized = err.kind == ErrorKind::Unauthorized;
    let mut response = err.into_response();
    if unauthorized {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// 405 `method_not_allowed`: an API endpoint asked with a method it does not take.
pub fn wrong_method() -> ApiError {
    ApiError::new(ErrorKind::MethodNotAllowed, "This API endpoint does not take that method.")
}

/// Middleware, outside the body limit and the timeout; `max_bytes` is the body limit, named in the sentence.
pub async fn as_api_errors(State(max_bytes): State<usize>, mut request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let writes = api && request.method() == Method::POST;
    if writes {
        // The API answers JSON to everyone. A request that accepts HTML would otherwise get the server functions'
        // redirect for forms posted without JavaScript (to its `Referer`, which the off-site check turns into a
        // text/plain 404); the page's forms never post without JavaScript, since a ticket lives in the tab's memory.
        request.headers_mut().insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    }
    let response = server_fn_fault(next.run(request).await).await;
    let already_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let error = match response.status() {
        _ if already_json => None,
        StatusCode::PAYLOAD_TOO_LARGE => Some(too_large(max_bytes)),
        StatusCode::REQUEST_TIMEOUT => {
            Some(ApiError::new(ErrorKind::TimedOut, "The request took too long to arrive or to answer; try again."))
        }
        StatusCode::NOT_FOUND if api => Some(ApiError::new(ErrorKind::NotFound, "There is no such API endpoint.")),
        StatusCode::METHOD_NOT_ALLOWED if api => Some(wrong_method()),
        _ => None,
    };
    let mut response = match error {
        Some(error) => {
            let allow = response.headers().get(header::ALLOW).cloned();
            let mut replaced = error.into_response();
            if let Some(allow) = allow {
                replaced.headers_mut().insert(header::ALLOW, allow);
            }
            replaced
        }
        None => response,
    };
    if writes {
        // A join's ticket and a send's answer belong to this tab alone: no cache keeps them.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A server function that failed before its body ran (its arguments could not be decoded) answers our JSON error
/// with the server-function layer's fixed 500 and its `serverfnerror` header; the error's own kind says what it was.
/// Answered with that kind's status instead, so a client's fault the form check did not foresee is still a 4xx
/// (and the trace layer, which logs every 5xx at ERROR, sees a 4xx). A failure of ours stays a 5xx.
async fn server_fn_fault(response: Response) -> Response {
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key(leptos::server_fn::error::SERVER_FN_ERROR_HEADER)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Our error is a kind and a sentence: a few hundred bytes.
    let bytes = axum::body::to_bytes(body, 65_536).await.unwrap_or_default();
    if let Ok(error) = serde_json::from_slice::<ApiError>(&bytes) {
        parts.status = error.http_status();
        if let Some(retry_after) = error.retry_after() {
            parts.headers.insert(header::RETRY_AFTER, retry_after);
        }
        if error.status() < 500 {
            tracing::debug!(kind = error.kind.code(), message = %error.message, "refused before a server function ran");
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Middleware inside the body limit and the timeout: reads an API request's form (the body of a POST, the query
/// of a GET) and refuses what the server functions would fail on, so they never answer a client's fault with 500.
pub async fn checked_forms(State(max_bytes): State<usize>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    if let Err(fault) = check_form(request.uri().query().unwrap_or("").as_bytes()) {
        return fault.into_response();
    }
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, max_bytes).await {
        Ok(bytes) => bytes,
        Err(err) => return unreadable_body(err, max_bytes),
    };
    // Every body is checked, whatever its `Content-Type` says (any case, `text/plain`, none): the server functions
    // decode any body as a form.
    if let Err(fault) = check_form(&bytes) {
        return fault.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// A body that could not be read: over the limit (a chunked body has no length to refuse it by up front), or cut
/// off by the client.
fn unreadable_body(err: axum::Error, max_bytes: usize) -> Response {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if cause.is::<http_body_util::LengthLimitError>() {
            tracing::debug!("request body over the limit");
            // The rest of the body is never read: the connection cannot carry another request.
            let mut response = too_large(max_bytes).into_response();
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        source = cause.source();
    }
    tracing::debug!(error = %err, "request body could not be read");
    ApiError::new(ErrorKind::BadRequest, "The request body could not be read.").into_response()
}

/// `a=1&b=2`: every field once, every name and value UTF-8 once percent-decoded, and every name plain: the forms of
/// this API are flat, and a bracketed name (`username[]`, `text[a]`) would be read as a list or a map.
fn check_form(form: &[u8]) -> Result<(), ApiError> {
    let mut seen = HashSet::new();
    for pair in form.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
        let mut halves = pair.splitn(2, |&b| b == b'=');
        let name = halves.next().unwrap_or_default();
        let decode = |raw: &[u8]| percent_encoding::percent_decode(raw).decode_utf8().map(|text| text.into_owned());
        let (Ok(name), Ok(_)) = (decode(name), decode(halves.next().unwrap_or_default())) else {
            return Err(ApiError::new(ErrorKind::BadRequest, "The form is not valid UTF-8 text."));
        };
        let name = name.replace('+', " ");
        if name.contains(['[', ']']) {
            return Err(ApiError::new(ErrorKind::BadRequest, format!("The field name {name:?} is not a plain name.")));
        }
        if !seen.insert(name.clone()) {
            return Err(ApiError::new(ErrorKind::BadRequest, format!("The field {name:?} is given more than once.")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_with_bad_utf8_or_repeated_fields_are_refused() {
        assert!(check_form(b"").is_ok());
        assert!(check_form(b"username=Zo%C3%AB+x&text=%E2%9C%93&").is_ok());
        for bad in [&b"username=%FF"[..], b"username=a%C3", b"%FF=1", b"username=\xff", b"since=1&since=2", b"a=1&a"] {
            let refused = check_form(bad).unwrap_err();
            assert_eq!(refused.kind, ErrorKind::BadRequest, "{}", String::from_utf8_lossy(bad));
        }
        assert!(check_form(b"username=a&username=b").unwrap_err().message.contains("\"username\""));
        for bracketed in [&b"username[]=x"[..], b"username[a]=x", b"text%5B%5D=a", b"ticket=t&text[0]=a"] {
            let refused = check_form(bracketed).unwrap_err();
            assert!(refused.message.contains("not a plain name"), "{}", String::from_utf8_lossy(bracketed));
        }
    }
}
