//! The cluster configuration Service validation depends on.

use std::ops::RangeInclusive;

use crate::alloc::IpFamily;

/// Cluster configuration the rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOptions {
    /// `--service-node-port-range`; requested nodePorts must lie in it.
    pub node_port_range: RangeInclusive<u16>,
    /// The families of `--service-cluster-ip-range`, the primary first.
    pub ip_families: Vec<IpFamily>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            node_port_range: 30000..=32767,
            ip_families: vec![IpFamily::Ipv4],
        }
    }
}
