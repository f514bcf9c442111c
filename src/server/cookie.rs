//! The group cookie, an HTTP layer like `peer::admit` and `refusal`: puts the caller's session group
//! (`group::GroupId`) into each request's extensions, where the handlers and the server functions find it, and sets
//! the anonymous, random, HttpOnly cookie that names a browser's group when the request came without one of ours.
//!
//! The cookie is `SameSite=Lax`, so a browser never sends it from a frame on another site (nor keeps one such a
//! frame is sent), and many block third-party cookies anyway: the embed on a deployer's page would get a new group
//! with every request, and its ticket would fit none of the next. So a group also travels without the cookie: a
//! request that carries none of ours gets a fresh group, which the embed's page is handed (`Minted`, rendered into
//! it, kept in the frame's memory) and names from then on in the `Broadcasting-Group` header (or, where the browser
//! sends no header of the page's, the event stream and the leave beacon, the `group` query parameter). That name
//! wins over a cookie: the page's tickets were signed for it. It is no more than the cookie's value under another
//! name (any well-formed one, as for the cookie), so no budget becomes keyed on anything a client could not already
//! vary by sending another cookie or none; the per-address budgets bound that client either way.

use axum::extract::{Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use cookie::{Cookie, SameSite};

use crate::server::group::{GroupId, Scope};
use crate::server::peer::Peer;
use crate::shared::wire;

pub const COOKIE_NAME: &str = "broadcasting_group";
/// The paths of the API for backends and moderators.
const V1_PREFIX: &str = "/api/v1/";

/// The group of a request that named none (no cookie of ours, no header or parameter): made for it, set in the
/// cookie, and handed to the embed's page (`routes`), which names it from then on.
#[derive(Debug, Clone)]
pub struct Minted(pub GroupId);

/// Middleware: puts the caller's `GroupId` into the request extensions, and sets the cookie when it was missing.
pub async fn assign(State(scope): State<Scope>, mut request: Request, next: Next) -> Response {
    if scope == Scope::Everyone {
        request.extensions_mut().insert(GroupId::everyone());
        return next.run(request).await;
    }
    // The API for backends and moderators (`/api/v1/…`) is no browser's: it needs no group, and its answers set no
    // cookie (a backend's HTTP client would keep a cookie for nothing).
    if request.uri().path().starts_with(V1_PREFIX) {
        request.extensions_mut().insert(GroupId::everyone());
        return next.run(request).await;
    }
    let named = named_group(&request).or_else(|| cookie_group(&request));
    let (group, fresh) = match named {
        Some(group) => (group, false),
        None => (GroupId::random(), true),
    };
    request.extensions_mut().insert(group.clone());
    if fresh {
        request.extensions_mut().insert(Minted(group.clone()));
    }
    // Over HTTPS (as a trusted proxy tells), the cookie is only ever sent back over HTTPS.
    let https = request.extensions().get::<Peer>().is_some_and(|peer| peer.https);
    let mut response = next.run(request).await;
    if fresh {
        let cookie = Cookie::build((COOKIE_NAME, group.as_str().to_owned()))
            .secure(https)
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .max_age(cookie::time::Duration::days(365))
            .build();
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
    response
}

/// The group the request names in the header, else in the query; a value the server could not have made is none
/// (as a foreign cookie is).
fn named_group(request: &Request) -> Option<GroupId> {
    if let Some(value) = request.headers().get(wire::GROUP_HEADER) {
        return value.to_str().ok().and_then(GroupId::issued);
    }
    let query = request.uri().query()?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == wire::GROUP_PARAM)
        .and_then(|(_, value)| GroupId::issued(&value))
}

/// The group the request's cookie names, if it is one of ours.
fn cookie_group(request: &Request) -> Option<GroupId> {
    request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == COOKIE_NAME)
        .and_then(|cookie| GroupId::issued(cookie.value()))
}
