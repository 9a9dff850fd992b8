//! What the authorizers judge against, kept in memory by list-then-watches
//! on etcd: the RBAC objects and the node graph.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::chain::Authorizer;
use super::follow::Followed;
use super::node::{NodeGraph, graph};
use super::policy::Policy;
use crate::store::Store;

#[derive(Clone)]
pub struct AuthzCache {
    policy: Followed<Policy>,
    nodes: Followed<NodeGraph>,
}

impl AuthzCache {
    /// Starts following etcd on `tasks`; the indexes fill once listed.
    pub fn start(store: &Store, tasks: &mut JoinSet<()>) -> Self {
        Self {
            policy: Followed::start(store, &Policy::roots(), Policy::from_objects, tasks),
            nodes: Followed::start(store, &graph::ROOTS, NodeGraph::from_objects, tasks),
        }
    }

    /// The RBAC policy as last seen.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.current()
    }

    /// The authorizer chain over the indexes as last seen.
    pub fn authorizer(&self) -> Authorizer {
        Authorizer {
            policy: self.policy.current(),
            nodes: self.nodes.current(),
        }
    }

    /// Waits (at most `limit` each) for the first lists.
    pub async fn wait_synced(&self, limit: Duration) {
        self.policy.wait_synced(limit, "the RBAC cache").await;
        self.nodes
            .wait_synced(limit, "the node authorizer's graph")
            .await;
    }
}
