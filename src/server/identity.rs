//! Identity from the deployer's app: a tab may join with a token (a JWT) that the deployer's backend signed, instead
//! of a name it typed. `verify` is the one place a token is read: the `jsonwebtoken` crate checks the signature and
//! the algorithm (and the audience and issuer, when the settings name them) with the key the settings give (`Keys`:
//! an HS256 secret, or an RS256 or EdDSA public key), and this module checks the claims this server uses, each
//! against its own rule, into an `Identity`. The clock is an argument (`now`), so expiry and its leeway are tested
//! without waiting.
//!
//! Claims: `sub` (required: the subject, shown to readers as the message's source), `name` (required: the display
//! name, under the same rules as a typed one), `exp` (required), `nbf` and `iat` (optional), `feeds` (optional
//! grants: `{"read": [...], "write": [...]}` of exact feed names and `prefix-*` patterns; a list left out grants
//! every feed), `role` (optional, carried for moderation). A token that names an audience is refused unless the
//! settings name one it contains (`token-audience`).
//!
//! A refusal says what is wrong in a sentence (`TokenError`, answered 401) and never repeats the token or any part
//! of it: tokens do not reach the log or an error text.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind as JwtError;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::shared::domain::{FeedName, InputError, JoinMode, Username};
use crate::shared::error::{ApiError, ErrorKind};

/// Longest token read, in bytes; a longer one is refused before it is decoded. A token with a few dozen grants is
/// well under 2 KiB.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest subject (`sub`), in bytes: an e-mail address fits (254), and it rides in every ticket
/// (`ticket::MAX_TICKET_BYTES`).
pub const MAX_SUBJECT_BYTES: usize = 255;

/// Longest `role`, in characters.
pub const MAX_ROLE_CHARS: usize = 64;

/// Most patterns in one grant list (`feeds.read` or `feeds.write`): checking a feed against them is a scan.
pub const MAX_GRANTS: usize = 64;

/// The algorithms a deployment may verify tokens with: one, chosen in the settings (`token-algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenAlgorithm {
    /// HMAC with SHA-256 and a secret shared with the deployer's backend.
    Hs256,
    /// RSA PKCS#1 v1.5 with SHA-256; the settings give the public key.
    Rs256,
    /// Ed25519; the settings give the public key.
    EdDsa,
}

impl TokenAlgorithm {
    /// The names the settings take, and tokens carry in their header.
    pub const NAMES: [(&'static str, TokenAlgorithm); 3] =
        [("HS256", Self::Hs256), ("RS256", Self::Rs256), ("EdDSA", Self::EdDsa)];

    pub fn name(self) -> &'static str {
        Self::NAMES.iter().find(|(_, algorithm)| *algorithm == self).map_or("", |(name, _)| name)
    }

    fn jwt(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Rs256 => Algorithm::RS256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// What verifies tokens: the key, the one algorithm it is for, and the audience, issuer and clock leeway. Its
/// `Debug` shows no key material.
#[derive(Clone)]
pub struct Keys {
    algorithm: TokenAlgorithm,
    key: DecodingKey,
    validation: Validation,
    leeway: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("algorithm", &self.algorithm).field("leeway", &self.leeway).finish()
    }
}

/// Why the settings' key cannot verify tokens; stops the start.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The identity settings do not fit together (see `startup::sign_in`).
    #[error("{0}")]
    Settings(&'static str),
    #[error("the token secret must be at least {MIN_SECRET_BYTES} bytes (HS256 takes a key as long as its hash)")]
    ShortSecret,
    #[error("token-algorithm {0} verifies with a secret: set token-secret or token-secret-file")]
    NeedsSecret(&'static str),
    #[error("{path}: not a {algorithm} public key in PEM form ({reason})")]
    BadPublicKey { path: String, algorithm: &'static str, reason: String },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
}

/// The shortest HS256 secret taken, in bytes: RFC 7518 asks for a key at least as long as the hash output.
pub const MIN_SECRET_BYTES: usize = 32;

impl Keys {
    /// HS256 with `secret`, shared with the deployer's backend.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::ShortSecret);
        }
        let key = DecodingKey::from_secret(secret).map_err(|_| KeyError::ShortSecret)?;
        Ok(Self::with_key(TokenAlgorithm::Hs256, key))
    }

    /// RS256 or EdDSA with a public key in PEM form (`path` names it in errors).
    pub fn public_pem(algorithm: TokenAlgorithm, pem: &[u8], path: &Path) -> Result<Self, KeyError> {
        let key = match algorithm {
            TokenAlgorithm::Hs256 => return Err(KeyError::NeedsSecret(algorithm.name())),
            TokenAlgorithm::Rs256 => DecodingKey::from_rsa_pem(pem),
            TokenAlgorithm::EdDsa => DecodingKey::from_ed_pem(pem),
        };
        let key = key.map_err(|err| KeyError::BadPublicKey {
            path: path.display().to_string(),
            algorithm: algorithm.name(),
            reason: err.to_string(),
        })?;
        Ok(Self::with_key(algorithm, key))
    }

    fn with_key(algorithm: TokenAlgorithm, key: DecodingKey) -> Self {
        let mut validation = Validation::new(algorithm.jwt());
        // `verify` checks every claim it uses itself, against its `now`; the crate checks the signature, the
        // algorithm, and the audience and issuer the settings name.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Self { algorithm, key, validation, leeway: 0 }
    }

    /// Tokens must name `audience` in their `aud` (and a token naming an audience is refused without one).
    pub fn with_audience(mut self, audience: Option<&str>) -> Self {
        if let Some(audience) = audience {
            self.validation.set_audience(&[audience]);
            self.validation.required_spec_claims.insert("aud".into());
        }
        self
    }

    /// Tokens must name `issuer` as their `iss`.
    pub fn with_issuer(mut self, issuer: Option<&str>) -> Self {
        if let Some(issuer) = issuer {
            self.validation.set_issuer(&[issuer]);
            self.validation.required_spec_claims.insert("iss".into());
        }
        self
    }

    /// Clock skew allowed between the deployer's backend and this server, for `exp` and `nbf`.
    pub fn with_leeway(self, leeway: std::time::Duration) -> Self {
        Self { leeway: leeway.as_secs(), ..self }
    }

    pub fn algorithm(&self) -> TokenAlgorithm {
        self.algorithm
    }
}

/// Which feeds a grant list covers: every feed (the list was left out), or those its patterns match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Any,
    Only(Vec<FeedPattern>),
}

impl Grant {
    pub fn covers(&self, feed: &FeedName) -> bool {
        match self {
            Self::Any => true,
            Self::Only(patterns) => patterns.iter().any(|pattern| pattern.matches(feed)),
        }
    }
}

/// One entry of a grant list: a feed's exact name, or `prefix*` for every feed whose name starts with `prefix`
/// (`team-*`: `team-news`, `team-ops`; `*` alone: every feed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedPattern {
    Exact(FeedName),
    Prefix(String),
}

impl FeedPattern {
    /// `None` for anything that is neither a feed name nor a name's start followed by one `*`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.strip_suffix('*') {
            Some("") => Some(Self::Prefix(String::new())),
            // A name's start is itself a valid name (a-z, 0-9, '-', not starting with '-') under the name's limit.
            Some(prefix) => FeedName::parse(prefix).map(|_| Self::Prefix(prefix.to_owned())),
            None => FeedName::parse(raw).map(Self::Exact),
        }
    }

    pub fn matches(&self, feed: &FeedName) -> bool {
        match self {
            Self::Exact(name) => name == feed,
            Self::Prefix(prefix) => feed.as_str().starts_with(prefix.as_str()),
        }
    }
}

/// What a token grants: the feeds it may read (private feeds use it) and those it may post in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub read: Grant,
    pub write: Grant,
}

impl Grants {
    /// No `feeds` claim: every feed, both ways.
    pub const ANY: Grants = Grants { read: Grant::Any, write: Grant::Any };
}

/// Who a valid token says the bearer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `sub`: 1 to [`MAX_SUBJECT_BYTES`] bytes, no control characters.
    pub subject: String,
    /// `name`, as `Username::parse` takes it.
    pub name: Username,
    /// `exp`, unix seconds.
    pub expires: u64,
    pub grants: Grants,
    /// `role`, if given (e.g. `moderator`).
    pub role: Option<String>,
}

/// Why a token was refused; the sentence is what the client reads (and never holds the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("The sign-in token is longer than {max} bytes; this server reads no further.")]
    TooLong { max: usize },
    #[error("The sign-in token is not a token this server can read (three base64url parts: a JSON header, JSON claims, a signature).")]
    Malformed,
    #[error("The sign-in token is signed with {got}; this server takes {expected} tokens only.")]
    WrongAlgorithm { got: String, expected: &'static str },
    #[error("The sign-in token's signature does not verify with this server's key.")]
    BadSignature,
    #[error("The sign-in token has expired; get a new one from the site.")]
    Expired,
    #[error("The sign-in token is not valid yet (its nbf is in the future).")]
    NotYetValid,
    #[error("The sign-in token is meant for another audience (its aud does not name this server's).")]
    WrongAudience,
    #[error("The sign-in token comes from another issuer (its iss is not this server's).")]
    WrongIssuer,
    #[error("The sign-in token has no `{0}` claim, which this server requires.")]
    MissingClaim(&'static str),
    #[error("The sign-in token's `{claim}` claim must be {rule}.")]
    BadClaim { claim: &'static str, rule: &'static str },
    #[error("The sign-in token's name is refused: {0}")]
    BadName(InputError),
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        ApiError::new(ErrorKind::Unauthorized, err.to_string())
    }
}

/// The identity `token` proves, at `now` (unix seconds), if `keys` verify it and every claim keeps its rule.
pub fn verify(keys: &Keys, token: &str, now: u64) -> Result<Identity, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong { max: MAX_TOKEN_BYTES });
    }
    let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &keys.key, &keys.validation)
        .map_err(|err| refusal(err.into_kind(), token, keys.algorithm))?
        .claims;
    identity(&claims, now, keys.leeway)
}

/// A refusal of the crate in this module's words.
fn refusal(err: JwtError, token: &str, expected: TokenAlgorithm) -> TokenError {
    match err {
        JwtError::InvalidSignature => TokenError::BadSignature,
        JwtError::InvalidAudience => TokenError::WrongAudience,
        JwtError::InvalidIssuer => TokenError::WrongIssuer,
        // The crate counts a claim it cannot read as missing: the token says which it is.
        JwtError::MissingRequiredClaim(claim) | JwtError::InvalidClaimFormat(claim) if claim == "aud" => {
            match token_part(token, 1).is_some_and(|claims| claims.contains_key("aud")) {
                true => TokenError::BadClaim { claim: "aud", rule: "a string or a list of strings" },
                false => TokenError::MissingClaim("aud"),
            }
        }
        JwtError::MissingRequiredClaim(claim) | JwtError::InvalidClaimFormat(claim) if claim == "iss" => {
            match token_part(token, 1).is_some_and(|claims| claims.contains_key("iss")) {
                true => TokenError::BadClaim { claim: "iss", rule: "a string" },
                false => TokenError::MissingClaim("iss"),
            }
        }
        // Another algorithm, or one the crate does not know (`none` among them): the header says which.
        _ => match header_algorithm(token) {
            Some(got) if got != expected.name() => TokenError::WrongAlgorithm { got, expected: expected.name() },
            _ => TokenError::Malformed,
        },
    }
}

/// Part `index` of a token (0: the header, 1: the claims) as a JSON object, read only to say what the crate refused
/// (it refused it already, so nothing read here is trusted).
fn token_part(token: &str, index: usize) -> Option<Map<String, Value>> {
    use base64::Engine;
    let part = token.split('.').nth(index)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&json).ok()
}

/// The `alg` a token's header names, to say which algorithm was refused.
fn header_algorithm(token: &str) -> Option<String> {
    let header = token_part(token, 0)?;
    let alg = header.get("alg")?.as_str()?;
    // Said back in the error: only a short name of plain characters.
    (alg.len() <= 16 && alg.chars().all(|c| c.is_ascii_alphanumeric())).then(|| alg.to_owned())
}

/// The claims of a verified token as an identity, at `now` with `leeway` seconds of clock skew either way.
fn identity(claims: &Map<String, Value>, now: u64, leeway: u64) -> Result<Identity, TokenError> {
    let subject = match claims.get("sub") {
        None => return Err(TokenError::MissingClaim("sub")),
        Some(Value::String(sub))
            if (1..=MAX_SUBJECT_BYTES).contains(&sub.len()) && !sub.chars().any(char::is_control) =>
        {
            sub.clone()
        }
        Some(_) => {
            return Err(TokenError::BadClaim {
                claim: "sub",
                rule: "a string of 1 to 255 bytes without control characters",
            })
        }
    };
    let name = match claims.get("name") {
        None => return Err(TokenError::MissingClaim("name")),
        Some(Value::String(name)) => Username::parse(name).map_err(TokenError::BadName)?,
        Some(_) => return Err(TokenError::BadClaim { claim: "name", rule: "a string" }),
    };
    let expires = time_claim(claims, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    let not_before = time_claim(claims, "nbf")?;
    time_claim(claims, "iat")?;
    if now >= expires.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if not_before.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(TokenError::NotYetValid);
    }
    let grants = match claims.get("feeds") {
        None => Grants::ANY,
        Some(Value::Object(feeds)) => {
            let known = |key: &String| key == "read" || key == "write";
            if !feeds.keys().all(known) {
                return Err(TokenError::BadClaim { claim: "feeds", rule: FEEDS_RULE });
            }
            Grants { read: grant(feeds.get("read"))?, write: grant(feeds.get("write"))? }
        }
        Some(_) => return Err(TokenError::BadClaim { claim: "feeds", rule: FEEDS_RULE }),
    };
    let role = match claims.get("role") {
        None => None,
        Some(Value::String(role))
            if (1..=MAX_ROLE_CHARS).contains(&role.chars().count()) && !role.chars().any(char::is_control) =>
        {
            Some(role.clone())
        }
        Some(_) => return Err(TokenError::BadClaim { claim: "role", rule: "a string of 1 to 64 characters" }),
    };
    Ok(Identity { subject, name, expires, grants, role })
}

const FEEDS_RULE: &str = "an object with `read` and `write` lists (each optional) of at most 64 feed names or \
                          name-prefix patterns such as \"team-*\"";

/// A NumericDate claim (RFC 7519: seconds since 1970, possibly with a fraction, dropped here), if present.
fn time_claim(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<u64>, TokenError> {
    let bad = TokenError::BadClaim { claim, rule: "a number of seconds since 1970" };
    match claims.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(whole), _) => Ok(Some(whole)),
            (None, Some(seconds)) if seconds.is_finite() && seconds >= 0.0 => Ok(Some(seconds as u64)),
            _ => Err(bad),
        },
        Some(_) => Err(bad),
    }
}

/// One grant list: left out is every feed.
fn grant(list: Option<&Value>) -> Result<Grant, TokenError> {
    let bad = TokenError::BadClaim { claim: "feeds", rule: FEEDS_RULE };
    let Some(list) = list else { return Ok(Grant::Any) };
    let items = list.as_array().ok_or(bad.clone())?;
    if items.len() > MAX_GRANTS {
        return Err(bad);
    }
    let patterns = items.iter().map(|item| item.as_str().and_then(FeedPattern::parse)).collect::<Option<Vec<_>>>();
    patterns.map(Grant::Only).ok_or(bad)
}

/// How this deployment lets tabs join, and what the page needs to know of it.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub mode: JoinMode,
    /// Set whenever `mode` takes tokens (settings refuse a token mode without a key).
    pub keys: Option<Keys>,
    /// Where the page asks the deployer's backend for a fresh token before the ticket expires.
    pub refresh_url: Option<String>,
}

impl SignIn {
    /// Today's join: a typed name, no tokens.
    pub fn anonymous() -> Self {
        Self { mode: JoinMode::Anonymous, keys: None, refresh_url: None }
    }

    /// The origin of a refresh URL on another site (`https://auth.example.com`), which the page's `connect-src` must
    /// allow; `None` for none, or a path on this site.
    pub fn refresh_origin(&self) -> Option<String> {
        let url = url::Url::parse(self.refresh_url.as_deref()?).ok()?;
        Some(url.origin().ascii_serialization()).filter(|origin| origin != "null")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"a secret of at least thirty-two bytes, shared";
    const NOW: u64 = 1_800_000_000;
    const RSA_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/identity/rsa-private.pem");
    const RSA_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/identity/rsa-public.pem");
    const ED_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/identity/ed25519-private.pem");
    const ED_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/identity/ed25519-public.pem");

    fn hs256() -> Keys {
        Keys::hs256(SECRET).unwrap().with_leeway(std::time::Duration::from_secs(30))
    }

    fn rs256() -> Keys {
        Keys::public_pem(TokenAlgorithm::Rs256, RSA_PUBLIC, Path::new("rsa-public.pem")).unwrap()
    }

    fn eddsa() -> Keys {
        Keys::public_pem(TokenAlgorithm::EdDsa, ED_PUBLIC, Path::new("ed25519-public.pem")).unwrap()
    }

    /// Claims that verify, as a deployer's backend would write them.
    fn claims() -> Value {
        json!({"sub": "user-42", "name": "Ada", "exp": NOW + 600, "iat": NOW})
    }

    fn with(change: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut claims = claims();
        change(claims.as_object_mut().unwrap());
        claims
    }

    fn sign_with(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
    }

    fn sign(claims: &Value) -> String {
        sign_with(Algorithm::HS256, &EncodingKey::from_secret(SECRET).unwrap(), claims)
    }

    /// A token whose header and claims are written as given, with `signature` (base64url) after them.
    fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
        let part = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
        format!("{}.{}.{signature}", part(header), part(claims))
    }

    /// A refusal, checked to say nothing of the token it refuses.
    fn refused(keys: &Keys, token: &str) -> TokenError {
        let err = verify(keys, token, NOW).expect_err("refused");
        let said = err.to_string();
        for part in token.split('.').filter(|part| part.len() > 8) {
            assert!(!said.contains(part), "the refusal repeats the token: {said}");
        }
        err
    }

    #[test]
    fn a_token_signed_with_the_secret_is_its_identity() {
        let token = sign(&with(|c| {
            c.insert("feeds".into(), json!({"read": ["team-*", "main"], "write": ["team-news"]}));
            c.insert("role".into(), json!("moderator"));
        }));
        let identity = verify(&hs256(), &token, NOW).unwrap();
        assert_eq!(
            (identity.subject.as_str(), identity.name.as_str(), identity.expires, identity.role.as_deref()),
            ("user-42", "Ada", NOW + 600, Some("moderator"))
        );
        let feed = |name: &str| FeedName::parse(name).unwrap();
        assert!(identity.grants.read.covers(&feed("team-ops")) && identity.grants.read.covers(&FeedName::main()));
        assert!(!identity.grants.read.covers(&feed("teams")) && !identity.grants.read.covers(&feed("other")));
        assert!(identity.grants.write.covers(&feed("team-news")) && !identity.grants.write.covers(&feed("team-ops")));
        // No `feeds`: every feed; a name is taken as a typed one is (trimmed, NFC).
        let plain = verify(&hs256(), &sign(&with(|c| drop(c.insert("name".into(), json!(" Zoe\u{301} "))))), NOW);
        let plain = plain.unwrap();
        assert_eq!((plain.grants, plain.name.as_str(), plain.role), (Grants::ANY, "Zoé", None));
    }

    #[test]
    fn rs256_and_eddsa_tokens_verify_with_their_public_keys() {
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
        assert_eq!(verify(&rs256(), &sign_with(Algorithm::RS256, &rsa, &claims()), NOW).unwrap().subject, "user-42");
        let ed = EncodingKey::from_ed_pem(ED_PRIVATE).unwrap();
        assert_eq!(verify(&eddsa(), &sign_with(Algorithm::EdDSA, &ed, &claims()), NOW).unwrap().subject, "user-42");
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let other = EncodingKey::from_secret(b"another secret of thirty-two bytes or more").unwrap();
        assert_eq!(refused(&hs256(), &sign_with(Algorithm::HS256, &other, &claims())), TokenError::BadSignature);
        // The claims changed after signing (a name swapped in): the signature no longer covers them.
        let token = sign(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let eve =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with(|c| drop(c.insert("name".into(), json!("Eve"))))).unwrap());
        assert_eq!(refused(&hs256(), &format!("{}.{eve}.{}", parts[0], parts[2])), TokenError::BadSignature);
        let ed = EncodingKey::from_ed_pem(ED_PRIVATE).unwrap();
        let mut forged = sign_with(Algorithm::EdDSA, &ed, &claims());
        forged.replace_range(forged.len() - 4.., "AAAA");
        assert_eq!(refused(&eddsa(), &forged), TokenError::BadSignature);
    }

    /// The key-confusion attack: a token signed with HS256 using the public key as the secret, sent to a server
    /// that verifies RS256 (or EdDSA); and the reverse. Each server takes its one algorithm only.
    #[test]
    fn a_token_of_another_algorithm_is_refused_both_ways() {
        let public_as_secret = EncodingKey::from_secret(RSA_PUBLIC).unwrap();
        let confused = sign_with(Algorithm::HS256, &public_as_secret, &claims());
        assert_eq!(refused(&rs256(), &confused), TokenError::WrongAlgorithm { got: "HS256".into(), expected: "RS256" });
        let ed_as_secret = sign_with(Algorithm::HS256, &EncodingKey::from_secret(ED_PUBLIC).unwrap(), &claims());
        assert_eq!(
            refused(&eddsa(), &ed_as_secret),
            TokenError::WrongAlgorithm { got: "HS256".into(), expected: "EdDSA" }
        );
        let rsa = sign_with(Algorithm::RS256, &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(), &claims());
        assert_eq!(refused(&hs256(), &rsa), TokenError::WrongAlgorithm { got: "RS256".into(), expected: "HS256" });
        assert_eq!(refused(&eddsa(), &rsa), TokenError::WrongAlgorithm { got: "RS256".into(), expected: "EdDSA" });
        let hs512 = sign_with(Algorithm::HS512, &EncodingKey::from_secret(SECRET).unwrap(), &claims());
        assert_eq!(refused(&hs256(), &hs512), TokenError::WrongAlgorithm { got: "HS512".into(), expected: "HS256" });
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        for alg in ["none", "None", "NONE"] {
            let token = raw_token(&json!({"alg": alg, "typ": "JWT"}), &claims(), "");
            assert_eq!(refused(&hs256(), &token), TokenError::WrongAlgorithm { got: alg.into(), expected: "HS256" });
            assert!(matches!(refused(&rs256(), &token), TokenError::WrongAlgorithm { .. }));
        }
        // With a signature of HS256 tacked on, still no.
        let signed = sign(&claims());
        let signature = signed.rsplit('.').next().unwrap();
        let token = raw_token(&json!({"alg": "none"}), &claims(), signature);
        assert!(matches!(refused(&hs256(), &token), TokenError::WrongAlgorithm { .. }));
    }

    #[test]
    fn expiry_and_not_before_are_checked_with_the_leeway() {
        let at = |claim: &str, time: u64| sign(&with(|c| drop(c.insert(claim.into(), json!(time)))));
        assert_eq!(refused(&hs256(), &at("exp", NOW - 31)), TokenError::Expired);
        assert_eq!(refused(&hs256(), &at("exp", NOW - 30)), TokenError::Expired, "the leeway ends at exp + 30");
        assert!(verify(&hs256(), &at("exp", NOW - 29), NOW).is_ok(), "within the leeway");
        let strict = Keys::hs256(SECRET).unwrap();
        assert_eq!(refused(&strict, &at("exp", NOW)), TokenError::Expired, "no leeway: expired at exp");
        assert!(verify(&strict, &at("exp", NOW + 1), NOW).is_ok());

        assert_eq!(refused(&hs256(), &at("nbf", NOW + 31)), TokenError::NotYetValid);
        assert!(verify(&hs256(), &at("nbf", NOW + 30), NOW).is_ok(), "within the leeway");
        assert_eq!(refused(&strict, &at("nbf", NOW + 1)), TokenError::NotYetValid);
        assert!(verify(&strict, &at("nbf", NOW), NOW).is_ok());
        // NumericDate may carry a fraction.
        assert!(verify(&strict, &sign(&with(|c| drop(c.insert("exp".into(), json!(NOW as f64 + 10.5))))), NOW).is_ok());
    }

    #[test]
    fn the_audience_and_issuer_are_checked_when_set() {
        let chat = hs256().with_audience(Some("chat")).with_issuer(Some("https://app.example"));
        let token = |aud: Value, iss: Value| {
            sign(&with(|c| {
                if !aud.is_null() {
                    c.insert("aud".into(), aud);
                }
                if !iss.is_null() {
                    c.insert("iss".into(), iss);
                }
            }))
        };
        let iss = || json!("https://app.example");
        assert!(verify(&chat, &token(json!("chat"), iss()), NOW).is_ok());
        assert!(verify(&chat, &token(json!(["other", "chat"]), iss()), NOW).is_ok());
        assert_eq!(refused(&chat, &token(json!("other"), iss())), TokenError::WrongAudience);
        assert_eq!(refused(&chat, &token(Value::Null, iss())), TokenError::MissingClaim("aud"));
        assert_eq!(
            refused(&chat, &token(json!(5), iss())),
            TokenError::BadClaim { claim: "aud", rule: "a string or a list of strings" }
        );
        assert_eq!(refused(&chat, &token(json!("chat"), json!("https://evil.example"))), TokenError::WrongIssuer);
        assert_eq!(refused(&chat, &token(json!("chat"), Value::Null)), TokenError::MissingClaim("iss"));
        // Without an audience set, a token meant for one is not for this server.
        assert_eq!(refused(&hs256(), &token(json!("chat"), Value::Null)), TokenError::WrongAudience);
        assert!(verify(&hs256(), &token(Value::Null, json!("anyone")), NOW).is_ok(), "no issuer set: any");
    }

    #[test]
    fn a_claim_of_the_wrong_type_is_refused_by_name() {
        let cases: [(&str, Value, &str); 10] = [
            ("name", json!(5), "name"),
            ("name", json!(["Ada"]), "name"),
            ("exp", json!("x"), "exp"),
            ("exp", json!(-5), "exp"),
            ("nbf", json!("soon"), "nbf"),
            ("iat", json!(true), "iat"),
            ("sub", json!(42), "sub"),
            ("feeds", json!("x"), "feeds"),
            ("role", json!(5), "role"),
            ("sub", json!(""), "sub"),
        ];
        for (claim, value, named) in cases {
            let token = sign(&with(|c| drop(c.insert(claim.into(), value.clone()))));
            match refused(&hs256(), &token) {
                TokenError::BadClaim { claim, .. } => assert_eq!(claim, named, "{claim}: {value}"),
                other => panic!("{claim}: {value}: {other:?}"),
            }
        }
        for feeds in [
            json!({"write": "team"}),
            json!({"write": ["Team"]}),
            json!({"read": ["a b"]}),
            json!({"read": ["-x*"]}),
            json!({"read": ["a*b"]}),
            json!({"write": [5]}),
            json!({"admin": ["main"]}),
            json!({"read": vec!["a"; MAX_GRANTS + 1]}),
        ] {
            let token = sign(&with(|c| drop(c.insert("feeds".into(), feeds.clone()))));
            assert!(matches!(refused(&hs256(), &token), TokenError::BadClaim { claim: "feeds", .. }), "{feeds}");
        }
        let long_sub = sign(&with(|c| drop(c.insert("sub".into(), json!("s".repeat(MAX_SUBJECT_BYTES + 1))))));
        assert!(matches!(refused(&hs256(), &long_sub), TokenError::BadClaim { claim: "sub", .. }));
        let hostile = sign(&with(|c| drop(c.insert("name".into(), json!("Ad\u{200B}a")))));
        assert_eq!(refused(&hs256(), &hostile), TokenError::BadName(InputError::NameInvisible));
    }

    #[test]
    fn a_missing_required_claim_is_refused_by_name() {
        for claim in ["sub", "name", "exp"] {
            let token = sign(&with(|c| drop(c.remove(claim))));
            assert_eq!(refused(&hs256(), &token), TokenError::MissingClaim(claim));
        }
    }

    #[test]
    fn garbage_is_refused_and_a_long_one_before_it_is_read() {
        let huge = "A".repeat(100 * 1024);
        assert_eq!(refused(&hs256(), &huge), TokenError::TooLong { max: MAX_TOKEN_BYTES });
        let over = format!("{}.{}.{}", "e".repeat(4_000), "e".repeat(4_000), "e".repeat(200));
        assert_eq!(refused(&hs256(), &over), TokenError::TooLong { max: MAX_TOKEN_BYTES });
        for junk in ["", "x", "a.b", "a.b.c", "....", "\u{0}\u{1}.\u{2}.\u{3}"] {
            assert_eq!(refused(&hs256(), junk), TokenError::Malformed, "{junk:?}");
        }
        // A header this server takes over a body that is no JSON: its signature is checked first, and fails.
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#);
        for body in ["!!!", &URL_SAFE_NO_PAD.encode("not json")] {
            let token = format!("{header}.{body}.abc");
            assert!(matches!(refused(&hs256(), &token), TokenError::Malformed | TokenError::BadSignature), "{token}");
        }
        // Each refusal is a 401 with a sentence.
        let answer = ApiError::from(TokenError::Malformed);
        assert_eq!((answer.kind, answer.status()), (ErrorKind::Unauthorized, 401));
    }

    #[test]
    fn keys_that_cannot_verify_stop_the_start() {
        assert_eq!(Keys::hs256(b"short").err(), Some(KeyError::ShortSecret));
        let path = Path::new("key.pem");
        assert!(matches!(
            Keys::public_pem(TokenAlgorithm::Rs256, ED_PUBLIC, path).err(),
            Some(KeyError::BadPublicKey { .. })
        ));
        assert!(matches!(
            Keys::public_pem(
                TokenAlgorithm::EdDsa,
                b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n",
                path
            )
            .err(),
            Some(KeyError::BadPublicKey { .. })
        ));
        assert_eq!(
            Keys::public_pem(TokenAlgorithm::Hs256, RSA_PUBLIC, path).err(),
            Some(KeyError::NeedsSecret("HS256"))
        );
        assert!(!format!("{:?}", hs256()).contains("secret of at least"), "Debug shows no key");
    }

    #[test]
    fn patterns_are_names_or_a_name_start_and_a_star() {
        let feed = |name: &str| FeedName::parse(name).unwrap();
        assert_eq!(FeedPattern::parse("main"), Some(FeedPattern::Exact(FeedName::main())));
        assert!(FeedPattern::parse("*").unwrap().matches(&feed("anything")));
        assert!(FeedPattern::parse("team-*").unwrap().matches(&feed("team-")));
        for bad in ["", "**", "team*-x", "Team-*", "-*", "a/b", "*a"] {
            assert_eq!(FeedPattern::parse(bad), None, "{bad:?}");
        }
        assert!(!Grant::Only(vec![]).covers(&feed("a")), "an empty list grants nothing");
    }
}
