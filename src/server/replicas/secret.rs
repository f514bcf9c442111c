//! The ticket secret, agreed by the replicas through Redis, so a ticket issued by one replica verifies on every
//! other, with no manual step; or start-up refuses with a sentence that says what to set.
//!
//! One key, `PREFIX:secret`, holds one of:
//! - `made <secret>`: no replica was given a `secret`; the first to start made one and every other uses it;
//! - `set <fingerprint>`: replicas were given a `secret`; Redis holds only its fingerprint (HMAC-SHA256 keyed by
//!   the secret over a fixed label), never the secret, so each replica can check that it holds the same one.
//!
//! A starting replica offers its value with `SET NX` and reads back what Redis holds ([`AGREE`], one step): it wins
//! the race or learns the winner. A `made` secret in Redis is as sensitive as the secret itself: whoever can read
//! Redis can sign tickets (configure `secret` and guard Redis to keep it off Redis).
//!
//! If Redis loses the key while replicas run (FLUSHALL, a new empty server), a replica starting next must not make
//! a second secret: every running replica offers its value again every `offer_every` ([`Guard`]), and a replica
//! that finds no key waits a little longer than that before making one, so a running replica's value is back
//! first. A guard that finds another value than its own (a fork that slipped through) logs an error: this replica's
//! tickets fail elsewhere until it restarts.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use redis::Script;
use sha2::Sha256;

use crate::server::link::{Link, LinkError};

/// How often a running replica offers its value again (see the module doc).
pub const OFFER_EVERY: Duration = Duration::from_secs(5);
/// How long a starting replica keeps trying to reach Redis before it gives up.
pub const REACH_WITHIN: Duration = Duration::from_secs(30);

/// `KEYS[1]`: the secret's key. `ARGV[1]`: this replica's offer. Answers what Redis holds after it.
const AGREE: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
"#;

const FINGERPRINT_LABEL: &[u8] = b"broadcasting ticket secret fingerprint v1";
const FIX: &str = "set the same BROADCASTING_SECRET on every replica, or unset it on all";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("replicas disagree on `secret`: {FIX}")]
    Differs,
    #[error("replicas disagree on `secret`: the others were given one and this replica was not; {FIX}")]
    OnlyOthersSet,
    #[error(
        "replicas disagree on `secret`: this replica was given one, the others share one made in Redis ({key}); \
         {FIX} (to move to a configured secret, stop every replica and delete {key} first)"
    )]
    OthersMadeOne { key: String },
    #[error("Redis holds something unexpected under {key}; delete it and start the replicas again")]
    Unreadable { key: String },
    #[error("cannot reach Redis to agree on the ticket secret with the other replicas ({0}); start Redis or check `redis-url`")]
    Unreachable(LinkError),
}

/// What this replica offers, or holds once agreed.
fn offer(configured: Option<&str>) -> String {
    match configured {
        Some(secret) => format!("set {}", fingerprint(secret)),
        None => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            format!("made {}", URL_SAFE_NO_PAD.encode(bytes))
        }
    }
}

/// HMAC-SHA256 keyed by the secret over a fixed label: equal for equal secrets, and no way back to the secret.
fn fingerprint(secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(FINGERPRINT_LABEL);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The secret to sign with, given what this replica was configured with and what Redis holds.
fn decide(configured: Option<&str>, offered: &str, held: &str, key: &str) -> Result<Vec<u8>, SecretError> {
    match (configured, held.split_once(' ')) {
        (Some(secret), _) if held == offered => Ok(secret.as_bytes().to_vec()),
        (Some(_), Some(("set", _))) => Err(SecretError::Differs),
        (Some(_), Some(("made", _))) => Err(SecretError::OthersMadeOne { key: key.to_owned() }),
        (None, Some(("made", made))) if !made.is_empty() => Ok(made.as_bytes().to_vec()),
        (None, Some(("set", _))) => Err(SecretError::OnlyOthersSet),
        _ => Err(SecretError::Unreadable { key: key.to_owned() }),
    }
}

/// The secret the replicas share, and the guard that keeps offering it (run it as a task).
pub struct Agreed {
    pub secret: Vec<u8>,
    pub guard: Guard,
}

/// Offers this replica's value again every `every`, so a Redis that lost the key gets it back (see module doc).
pub struct Guard {
    link: Link,
    held: String,
    every: Duration,
    agree: Script,
}

/// Agrees on the secret with the other replicas through Redis: `configured` (checked by fingerprint) or the one
/// Redis holds (made now if none). Tries to reach Redis for `reach_within`; `offer_every` is the running replicas'
/// period (a missing key is made only after a little more than it).
pub async fn agree(
    link: Link,
    configured: Option<&str>,
    offer_every: Duration,
    reach_within: Duration,
) -> Result<Agreed, SecretError> {
    let key = link.key("secret");
    let agree = Script::new(AGREE);
    let offered = offer(configured);
    let exists = Script::new("return redis.call('EXISTS', KEYS[1])");
    let (link_ref, key_ref, offered_ref, exists_ref) = (&link, &key, &offered, &exists);
    let found: i64 = retry(reach_within, || async move { link_ref.invoke(&exists_ref.key(key_ref)).await }).await?;
    if found == 0 {
        // A fresh deployment, or a Redis that lost the key: running replicas, if any, put theirs back meanwhile.
        tracing::info!(%key, "no ticket secret in Redis yet; waiting one offer period before making one");
        tokio::time::sleep(offer_every + offer_every / 2).await;
    }
    let agree_ref = &agree;
    let held: String = retry(reach_within, || async move {
        let mut call = agree_ref.key(key_ref);
        call.arg(offered_ref);
        link_ref.invoke(&call).await
    })
    .await?;
    let secret = decide(configured, &offered, &held, &key)?;
    Ok(Agreed { secret, guard: Guard { link, held, every: offer_every, agree } })
}

/// `call` until it answers, for up to `within` (a replica may start before Redis does).
async fn retry<T, F, Fut>(within: Duration, mut call: F) -> Result<T, SecretError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LinkError>>,
{
    let until = tokio::time::Instant::now() + within;
    loop {
        match call().await {
            Ok(answer) => return Ok(answer),
            Err(err) if tokio::time::Instant::now() >= until => return Err(SecretError::Unreachable(err)),
            Err(err) => {
                tracing::warn!(error = %err, "waiting for Redis to agree on the ticket secret");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

impl Guard {
    /// Offers the held value every period for as long as the server runs.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.offer_again().await;
        }
    }

    /// One offer: puts the value back if Redis lost it; logs an error if Redis holds another.
    pub async fn offer_again(&self) {
        let key = self.link.key("secret");
        let mut call = self.agree.key(&key);
        call.arg(&self.held);
        match self.link.invoke::<String>(&call).await {
            Ok(held) if held == self.held => {}
            Ok(_) => tracing::error!(
                %key,
                "Redis holds another ticket secret than this replica (the key was lost and remade): tickets issued \
                 here fail on other replicas; restart this replica"
            ),
            Err(err) => tracing::warn!(error = %err, "could not offer the ticket secret to Redis this round"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::replicas::test_link;
    use crate::server::replicas::test_redis::TestRedis;

    const QUICK: Duration = Duration::from_millis(100);

    async fn start(redis: &TestRedis, configured: Option<&str>) -> Result<Agreed, SecretError> {
        agree(test_link(redis), configured, QUICK, Duration::from_secs(2)).await
    }

    #[tokio::test]
    async fn replicas_without_a_secret_share_the_one_the_first_made() {
        let redis = TestRedis::start();
        let (a, b) = tokio::join!(start(&redis, None), start(&redis, None));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.secret, b.secret);
        assert!(a.secret.len() >= 32);
        let stored = redis.command(&["GET", "test:secret"]);
        assert_eq!(stored.text(), Some(format!("made {}", String::from_utf8(a.secret.clone()).unwrap()).as_str()));
        assert_eq!(start(&redis, None).await.unwrap().secret, a.secret, "a later replica too");
    }

    #[tokio::test]
    async fn configured_secrets_must_match_and_redis_holds_only_a_fingerprint() {
        let redis = TestRedis::start();
        let secret = "one shared secret, long enough";
        assert_eq!(start(&redis, Some(secret)).await.unwrap().secret, secret.as_bytes());
        assert_eq!(start(&redis, Some(secret)).await.unwrap().secret, secret.as_bytes());
        let stored = redis.command(&["GET", "test:secret"]).text().unwrap().to_owned();
        assert!(stored.starts_with("set ") && !stored.contains(secret), "{stored}");
        let err = start(&redis, Some("another secret, long enough")).await.err().unwrap().to_string();
        assert!(err.contains("replicas disagree on `secret`") && err.contains("BROADCASTING_SECRET"), "{err}");
        let err = start(&redis, None).await.err().unwrap().to_string();
        assert!(err.contains("this replica was not"), "{err}");
    }

    #[tokio::test]
    async fn a_configured_replica_refuses_to_join_replicas_sharing_a_made_secret() {
        let redis = TestRedis::start();
        start(&redis, None).await.unwrap();
        let err = start(&redis, Some("configured here only!")).await.err().unwrap().to_string();
        assert!(err.contains("made in Redis") && err.contains("delete test:secret"), "{err}");
    }

    #[tokio::test]
    async fn a_lost_key_is_put_back_by_a_running_replica_before_a_new_one_makes_another() {
        let redis = TestRedis::start();
        let running = start(&redis, None).await.unwrap();
        let guard = tokio::spawn(running.guard.run());
        redis.command(&["FLUSHALL"]);
        let newcomer = start(&redis, None).await.unwrap();
        assert_eq!(newcomer.secret, running.secret, "the newcomer waited and got the running replica's secret");
        guard.abort();
    }

    #[tokio::test]
    async fn an_unreachable_redis_stops_the_start_with_a_clear_message() {
        let mut redis = TestRedis::start();
        let link = test_link(&redis);
        redis.kill9();
        let err = agree(link, None, QUICK, Duration::from_millis(300)).await.err().unwrap().to_string();
        assert!(err.contains("cannot reach Redis") && err.contains("redis-url"), "{err}");
    }

    #[test]
    fn the_fingerprint_depends_on_the_secret_only() {
        assert_eq!(fingerprint("a secret of sorts"), fingerprint("a secret of sorts"));
        assert_ne!(fingerprint("a secret of sorts"), fingerprint("a secret of sorts!"));
        assert!(decide(None, "made x", "garbage", "k").is_err());
    }
}
