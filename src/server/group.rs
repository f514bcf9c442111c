//! Session groups: who gets pushed a notification. By default a group is one browser, named by an anonymous,
//! random, HttpOnly cookie; with scope `everyone`, every visitor shares one group.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use cookie::{Cookie, SameSite};
use rand::RngCore;

use crate::server::peer::Peer;

pub const COOKIE_NAME: &str = "broadcasting_group";

/// 128 random bits, hex-encoded.
const GROUP_HEX_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupId(Arc<str>);

impl GroupId {
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The one group of scope `everyone`.
    pub fn everyone() -> Self {
        Self::new("everyone")
    }

    fn random() -> Self {
        let mut bytes = [0u8; GROUP_HEX_LEN / 2];
        rand::rng().fill_bytes(&mut bytes);
        Self::new(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    /// A cookie value we could have issued; anything else is replaced by a fresh group.
    fn from_cookie(value: &str) -> Option<Self> {
        let ours =
            value.len() == GROUP_HEX_LEN && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ours.then(|| Self::new(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One group per browser (the group cookie).
    Browser,
    /// One group for every visitor.
    Everyone,
}

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
        .and_then(|cookie| GroupId::from_cookie(cookie.value()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_groups_are_128_bit_hex_and_distinct() {
        let (a, b) = (GroupId::random(), GroupId::random());
        assert_ne!(a, b);
        assert_eq!(GroupId::from_cookie(a.as_str()), Some(a.clone()));
        assert_eq!(a.as_str().len(), 32);
    }

    #[test]
    fn foreign_cookie_values_are_not_groups() {
        assert_eq!(GroupId::from_cookie("everyone"), None);
        assert_eq!(GroupId::from_cookie(""), None);
        assert_eq!(GroupId::from_cookie(&"G".repeat(32)), None);
        assert_eq!(GroupId::from_cookie(&"a".repeat(33)), None);
    }
}
