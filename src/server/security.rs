//! Security headers. The page gets a Content-Security-Policy whose only inline scripts are Leptos's own, each
//! carrying the nonce leptos_axum makes for that response; every other answer (API, events, files) gets a policy
//! that allows nothing, since none of them is a document. Neither page nor answers may be framed.

use axum::http::header::{CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use axum::http::HeaderValue;
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

/// For answers that are not the page.
const NOT_A_DOCUMENT: &str = "default-src 'none'; frame-ancestors 'none'";

/// The page's policy: scripts only from this origin or with this response's nonce, wasm compiled by the browser
/// ('wasm-unsafe-eval' allows no JavaScript `eval`), requests and styles only to and from this origin.
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// Sets the policy of the page being rendered (called from the shell while the server renders it).
pub fn protect_page() {
    use leptos::prelude::use_context;
    if let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>()) {
        if let Ok(value) = HeaderValue::from_str(&page_policy(nonce.as_inner())) {
            response.insert_header(CONTENT_SECURITY_POLICY, value);
        }
    }
}

/// The headers every answer carries; a policy already set (the page's) is kept.
pub fn headers(router: Router) -> Router {
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(NOT_A_DOCUMENT),
        ))
        .layer(SetResponseHeaderLayer::overriding(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        // For browsers that predate `frame-ancestors`.
        .layer(SetResponseHeaderLayer::overriding(X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
}
