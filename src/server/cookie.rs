//! The group cookie, an HTTP layer like `peer::admit` and `refusal`: puts the caller's session group
//! (`group::GroupId`) into each request's extensions, where the handlers and the server functions find it, and sets
//! the anonymous, random, HttpOnly cookie that names a browser's group when the request came without one of ours.

use axum::extract::{Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use cookie::{Cookie, SameSite};

use crate::server::group::{GroupId, Scope};
use crate::server::peer::Peer;

pub const COOKIE_NAME: &str = "broadcasting_group";

/// Middleware: puts the caller's `GroupId` into the request extensions, and sets the cookie when it was missing.
pub async fn assign(State(scope): State<Scope>, mut request: Request, next: Next) -> Response {
    if scope == Scope::Everyone {
        request.extensions_mut().insert(GroupId::everyone());
        return next.run(request).await;
    }
    let existing = request
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == COOKIE_NAME)
        .and_then(|cookie| GroupId::issued(cookie.value()));
    let (group, fresh) = match existing {
        Some(group) => (group, false),
        None => (GroupId::random(), true),
    };
    request.extensions_mut().insert(group.clone());
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
