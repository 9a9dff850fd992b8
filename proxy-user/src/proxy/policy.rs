//! How a frontend balances besides its backend list: what the cluster view
//! asks for and the datapath programs (`datapath::policy` encodes it in the
//! frontend's map entry). Its own module, so that neither side imports the
//! other.
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `sessionAffinity: ClientIP`: seconds a client keeps its backend
    /// after its last connection.
    pub affinity_timeout: Option<u32>,
    /// Reached from outside the node (NodePort, load balancer IP, external
    /// IP).
    pub external: bool,
    /// `externalTrafficPolicy: Local`: the backends are this node's, and
    /// external traffic is dropped when there are none.
    pub local_only: bool,
    /// `loadBalancerSourceRanges` of the frontend's family; empty admits
    /// every source. Sorted and deduplicated.
    pub source_ranges: Vec<SourceCidr>,
    /// The Service asks for outlier detection: the datapath reports how
    /// connects through the frontend end.
    pub outlier_detection: bool,
}

/// A network a source may come from, IPv4 or IPv6 (the order puts every
/// IPv4 network first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceCidr {
    /// Host bits clear.
    pub network: IpAddr,
    pub prefix_len: u8,
}
