//! Security headers. The page gets a Content-Security-Policy whose only inline scripts are Leptos's own, each
//! carrying the nonce leptos_axum makes for that response; every other answer (API, events, files) gets a policy
//! that allows nothing, since none of them is a document. Neither page nor answers may be framed. No redirect
//! leaves the site: the static files' directory redirect turns `//pkg` into `Location: //pkg/`, which a browser
//! reads as another host, so such an answer becomes a 404.

use axum::http::header::{CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

/// For answers that are not the page.
const NOT_A_DOCUMENT: &str = "default-src 'none'; frame-ancestors 'none'";
/// Every answer's: no type sniffing, no referrer, no framing (for browsers that predate `frame-ancestors`).
const NOSNIFF: &str = "nosniff";
const NO_REFERRER: &str = "no-referrer";
const DENY: &str = "DENY";

/// The page's policy: scripts only from this origin or with this response's nonce, wasm compiled by the browser
/// ('wasm-unsafe-eval' allows no JavaScript `eval`), requests and styles only to and from this origin, and requests
/// to `also_connect` (the origin of a sign-in refresh URL on another site, as the `url` crate serializes it).
pub fn page_policy(nonce: &str, also_connect: Option<&str>) -> String {
    let also = also_connect.map(|origin| format!(" {origin}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'{also}; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// Sets the policy of the page being rendered (called from the shell while the server renders it).
pub fn protect_page(also_connect: Option<&str>) {
    use leptos::prelude::use_context;
    if let (Some(nonce), Some(response)) = (leptos::nonce::use_nonce(), use_context::<leptos_axum::ResponseOptions>()) {
        if let Ok(value) = HeaderValue::from_str(&page_policy(nonce.as_inner(), also_connect)) {
            response.insert_header(CONTENT_SECURITY_POLICY, value);
        }
    }
}

/// Whether a `Location` stays on this site: a path (one leading slash, not `//host` or `/\host`).
fn on_site(location: &[u8]) -> bool {
    match location {
        [b'/', b'/' | b'\\', ..] => false,
        [b'/', ..] => true,
        _ => false,
    }
}

/// An answer that would redirect off the site is answered 404 instead.
async fn on_site_redirects(response: Response) -> Response {
    match response.headers().get(LOCATION) {
        Some(location) if !on_site(location.as_bytes()) => {
            tracing::debug!(?location, "refused an off-site redirect");
            (StatusCode::NOT_FOUND, "Not found").into_response()
        }
        _ => response,
    }
}

/// The headers an answer that is not the page carries, for a route outside `headers` (the hot path of
/// `GET /api/messages`, which skips every per-request layer).
pub fn not_a_document(headers: &mut axum::http::HeaderMap) {
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(NOT_A_DOCUMENT));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static(NOSNIFF));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static(NO_REFERRER));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static(DENY));
}

/// The headers every answer carries; a policy already set (the page's) is kept.
pub fn headers(router: Router) -> Router {
    router
        .layer(axum::middleware::map_response(on_site_redirects))
        .layer(SetResponseHeaderLayer::if_not_present(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(NOT_A_DOCUMENT),
        ))
        .layer(SetResponseHeaderLayer::overriding(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static(NOSNIFF)))
        .layer(SetResponseHeaderLayer::overriding(REFERRER_POLICY, HeaderValue::from_static(NO_REFERRER)))
        .layer(SetResponseHeaderLayer::overriding(X_FRAME_OPTIONS, HeaderValue::from_static(DENY)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_paths_are_on_site() {
        for ok in ["/pkg/", "/", "/a//b"] {
            assert!(super::on_site(ok.as_bytes()), "{ok}");
        }
        for off in ["//pkg/", "///pkg/", "/\\evil.example/", "https://evil.example/", "", "pkg/"] {
            assert!(!super::on_site(off.as_bytes()), "{off}");
        }
    }
}
