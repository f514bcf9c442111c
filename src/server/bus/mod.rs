//! The bus: how "messages up to `id` exist in `group`" travels to every process's hub. Narrow on purpose: a bus
//! only publishes; its receive side (for an in-process bus, `publish` itself; for a cross-process one, a task
//! reading the transport) hands each notice to `Hub::deliver`, which every backend shares. Publishing happens after
//! the append is committed and in append order, so a notice never announces a message the store cannot read (the
//! Redis bus publishes inside the store's append script, atomically with it: see `redis`).

use std::sync::Arc;

use async_trait::async_trait;

use crate::server::group::GroupId;
use crate::server::hub::Hub;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Announces to the subscribers of `group`, in every process, that messages up to `id` exist.
    async fn publish(&self, group: &GroupId, id: u64) -> Result<(), BusError>;
}

/// One process: a publish is delivered straight into the local hub.
pub struct LocalBus {
    hub: Arc<Hub>,
}

impl LocalBus {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, group: &GroupId, id: u64) -> Result<(), BusError> {
        self.hub.deliver(group, id);
        Ok(())
    }
}

pub mod redis;

#[cfg(test)]
mod contract;
