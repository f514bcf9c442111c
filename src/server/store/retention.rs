//! Retention belongs to the store: on its own clock (`prune-every`), never on a client's request, the log keeps
//! the newest `keep` messages and, with `max_age`, only those younger than it. The pass that applies it, and who
//! runs it when replicas share a log, is `pruning`.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep: usize,
    pub max_age: Option<Duration>,
    pub every: Duration,
}
