//! Security headers. The page gets a Content-Security-Policy whose only inline scripts are Leptos's own, each
//! carrying the nonce leptos_axum makes for that response; every other answer (API, events, files) gets a policy
//! that allows nothing, since none of them is a document. Nothing may be framed, but the embed (`/f/{feed}/embed`)
//! by the origins of `embed-origins` (`Framers`): its policy names them in `frame-ancestors`, and it alone goes
//! without `X-Frame-Options: DENY` while some origin may frame it. No redirect leaves the site: the static files'
//! directory redirect turns `//pkg` into `Location: //pkg/`, which a browser reads as another host, so such an
//! answer becomes a 404.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::shared::wire;

/// For answers that are not the page.
const NOT_A_DOCUMENT: &str = "default-src 'none'; frame-ancestors 'none'";
/// Every answer's: no type sniffing, no referrer, no framing (for browsers that predate `frame-ancestors`).
const NOSNIFF: &str = "nosniff";
const NO_REFERRER: &str = "no-referrer";
const DENY: &str = "DENY";
/// The `frame-ancestors` of everything no one may frame.
const NOBODY: &str = "'none'";

/// Who may frame the embed: the origins of `embed-origins`, as its policy's `frame-ancestors` sources.
#[derive(Debug, Clone, Default)]
pub struct Framers(Option<Arc<str>>);

impl Framers {
    /// `origins` as the settings read them (each one checked and written as a browser writes an origin, so none can
    /// break out of the directive); none: nobody may frame the embed.
    pub fn new(origins: &[String]) -> Self {
        Self((!origins.is_empty()).then(|| origins.join(" ").into()))
    }

    fn ancestors(&self) -> &str {
        self.0.as_deref().unwrap_or(NOBODY)
    }
}

/// The page's policy: scripts only from this origin or with this response's nonce, wasm compiled by the browser
/// ('wasm-unsafe-eval' allows no JavaScript `eval`), requests and styles only to and from this origin and requests
/// to `also_connect` (the origin of a sign-in refresh URL on another site, as the `url` crate serializes it), framed
/// only by `ancestors` (`'none'`, or the embed's framers).
pub fn page_policy(nonce: &str, ancestors: &str, also_connect: Option<&str>) -> String {
    let also = also_connect.map(|origin| format!(" {origin}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'{also}; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors {ancestors}"
    )
}

/// Whether a request's path is an embed's (`wire::page_of`).
fn is_embed(path: &str) -> bool {
    wire::page_of(path).is_some_and(|(_, embed)| embed)
}

/// Sets the policy of the page being rendered (called from the shell while the server renders it): the embed may
/// be framed by `framers`, any other page by nobody. The embed is never stored by a cache: it may carry the session
/// group it was handed (`cookie`).
pub fn protect_page(framers: &Framers, also_connect: Option<&str>) {
    use leptos::prelude::use_context;
    let embed = use_context::<axum::http::request::Parts>().is_some_and(|parts| is_embed(parts.uri.path()));
    let Some(response) = use_context::<leptos_axum::ResponseOptions>() else { return };
    if let Some(nonce) = leptos::nonce::use_nonce() {
        let ancestors = if embed { framers.ancestors() } else { NOBODY };
        if let Ok(value) = HeaderValue::from_str(&page_policy(nonce.as_inner(), ancestors, also_connect)) {
            response.insert_header(CONTENT_SECURITY_POLICY, value);
        }
    }
    if embed {
        response.insert_header(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// `X-Frame-Options: DENY` on every answer but an embed's while some origin may frame it: the header cannot name
/// origins, and a browser that reads the policy's `frame-ancestors` ignores it anyway; on the embed it would only
/// make a browser that predates `frame-ancestors` refuse every framer.
async fn frame_options(State(framers): State<Framers>, request: Request, next: Next) -> Response {
    let framable = framers.0.is_some() && is_embed(request.uri().path());
    let mut response = next.run(request).await;
    if framable && response.status().is_success() {
        response.headers_mut().remove(X_FRAME_OPTIONS);
    } else {
        response.headers_mut().insert(X_FRAME_OPTIONS, HeaderValue::from_static(DENY));
    }
    response
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
pub fn headers(router: Router, framers: Framers) -> Router {
    router
        .layer(axum::middleware::map_response(on_site_redirects))
        .layer(SetResponseHeaderLayer::if_not_present(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(NOT_A_DOCUMENT),
        ))
        .layer(SetResponseHeaderLayer::overriding(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static(NOSNIFF)))
        .layer(SetResponseHeaderLayer::overriding(REFERRER_POLICY, HeaderValue::from_static(NO_REFERRER)))
        .layer(axum::middleware::from_fn_with_state(framers, frame_options))
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
