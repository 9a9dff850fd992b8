//! The cluster configuration Service validation depends on.

use std::ops::RangeInclusive;

/// Cluster configuration the rules depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOptions {
    /// `--service-node-port-range`; requested nodePorts must lie in it.
    pub node_port_range: RangeInclusive<u16>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            node_port_range: 30000..=32767,
        }
    }
}
