//! The cluster cache shared between the sync loop, its only writer, and
//! the agent's other readers (the Ingress proxy resolves its backends from
//! it), with a revision readers wait on to learn that it changed.
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use super::state::ClusterState;

#[derive(Clone, Debug)]
pub struct SharedCluster {
    state: Arc<RwLock<ClusterState>>,
    changed: watch::Sender<u64>,
}

impl Default for SharedCluster {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            changed: watch::Sender::new(0),
        }
    }
}

impl SharedCluster {
    /// The cache as it is now. Held briefly: the sync loop waits for it.
    pub fn read(&self) -> RwLockReadGuard<'_, ClusterState> {
        // A panicking writer leaves a cache the next resync replaces.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, ClusterState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the readers that the cache changed.
    pub fn publish(&self) {
        self.changed.send_modify(|revision| *revision += 1);
    }

    /// Wakes on every [`SharedCluster::publish`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
