//! What the strategies need at run time besides the object: the cluster's
//! configuration, the allocators of its shared pools and the stored objects
//! admission looks at.

use serde_json::Value;

use super::refusal::Refusal;
use super::service::pools::{ServiceNetwork, ServicePools};
use super::service::validation::ServiceOptions;
use crate::store::{Store, collection_prefix};

/// Built once per API server from its configuration. Cheap to clone.
#[derive(Clone)]
pub struct Env {
    pub(super) service_pools: ServicePools,
    /// What Service validation depends on (the NodePort range, the service
    /// ranges' families).
    pub(super) service_options: ServiceOptions,
    store: Store,
}

impl Env {
    pub fn new(store: Store, network: &ServiceNetwork) -> Self {
        Self {
            service_pools: ServicePools::new(store.client(), network),
            service_options: ServiceOptions {
                node_port_range: network.node_port_range.clone(),
                ip_families: network.cluster_ip_ranges.families(),
            },
            store,
        }
    }

    /// An environment whose store is never reached: the client connects
    /// lazily, and validation reads only the configuration. For the
    /// property tests and the fuzz targets, which check bodies without
    /// etcd; call it inside a Tokio runtime.
    #[cfg(any(test, fuzzing))]
    pub async fn unconnected(network: &ServiceNetwork) -> Self {
        let nowhere = ["http://127.0.0.1:1".to_owned()];
        let store = Store::connect(&nowhere, None)
            .await
            .expect("an etcd client connects lazily");
        Self::new(store, network)
    }

    /// Every stored object of the cluster-scoped kind stored under `base`.
    pub(super) async fn list(&self, base: &str) -> Result<Vec<Value>, Refusal> {
        let prefix = collection_prefix(base, None);
        self.store
            .list(&prefix, Default::default(), |_| true)
            .await
            .map(|page| page.items)
            .map_err(Refusal::from)
    }
}
