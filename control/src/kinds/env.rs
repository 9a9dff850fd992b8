//! What the strategies need at run time besides the object: the cluster's
//! configuration and the allocators of its shared pools.

use super::service::pools::{ServiceNetwork, ServicePools};
use super::service::validation::ServiceOptions;

/// Built once per API server from its configuration. Cheap to clone.
#[derive(Clone)]
pub struct Env {
    pub(super) service_pools: ServicePools,
    /// What Service validation depends on (the NodePort range).
    pub(super) service_options: ServiceOptions,
}

impl Env {
    pub fn new(client: skiff_etcd::kv::Kv, network: &ServiceNetwork) -> Self {
        Self {
            service_pools: ServicePools::new(client, network),
            service_options: ServiceOptions {
                node_port_range: network.node_port_range.clone(),
            },
        }
    }
}
