//! The fixed address plan of a local cluster (docs/ARCHITECTURE.md, "The local cluster").
//!
//! Fixed rather than per run: the root netns can route each range to only one
//! place, which is why only one cluster exists at a time (see `lock`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// An IPv4 network: address plus prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Cidr {
    pub const fn new(addr: Ipv4Addr, len: u8) -> Ipv4Cidr {
        Ipv4Cidr { addr, len }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }

    /// The `n`th address of the network (`n = 1` is the gateway by convention).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) + n)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The bridge in the fabric netns that nodes, the outside client and the
/// control plane share.
pub const FABRIC_CIDR: Ipv4Cidr = Ipv4Cidr::new(Ipv4Addr::new(172, 30, 0, 0), 24);
/// The root netns end of the control-plane veth: etcd and the API server listen here.
pub const CONTROL_PLANE_IP: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 254);
/// Control-plane members of an HA cluster (`<prefix>-cp<i>`) are
/// 172.30.0.1 … 172.30.0.9.
pub const MAX_CONTROL_PLANES: usize = 9;

/// Control-plane member `i` (1-based): `172.30.0.<i>`.
pub fn control_plane_member_ip(i: usize) -> Ipv4Addr {
    assert!(
        (1..=MAX_CONTROL_PLANES).contains(&i),
        "control-plane index {i} out of 1..={MAX_CONTROL_PLANES}"
    );
    FABRIC_CIDR.host(i as u32)
}

/// The outside client (`<prefix>-ext`).
pub const EXT_IP: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 100);
/// Every node's pod CIDR lies in here.
pub const POD_SUPERNET: Ipv4Cidr = Ipv4Cidr::new(Ipv4Addr::new(10, 244, 0, 0), 16);
/// ClusterIPs: only the datapath knows them; everything else must fail fast.
pub const SERVICE_CIDR: Ipv4Cidr = Ipv4Cidr::new(Ipv4Addr::new(10, 96, 0, 0), 12);
/// `kube-system/kube-dns`'s ClusterIP, the service range's tenth address
/// (skiff-control creates it there), which pods' resolv.conf names.
pub const CLUSTER_DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Nodes are 172.30.0.11 … 172.30.0.99: node 90 would take the outside client's address.
pub const MAX_NODES: usize = 89;
/// Pods get host numbers 2 … 254 of their node's /24 (1 is the node's `cbr0`).
pub const MAX_PODS_PER_NODE: usize = 253;

/// Node `i` (1-based): `172.30.0.1<i>` for i < 10, i.e. `172.30.0.(10 + i)`.
pub fn node_ip(i: usize) -> Ipv4Addr {
    assert!(
        (1..=MAX_NODES).contains(&i),
        "node index {i} out of 1..={MAX_NODES}"
    );
    FABRIC_CIDR.host(10 + i as u32)
}

/// Node `i`'s pod CIDR: `10.244.<i>.0/24`.
pub fn pod_cidr(i: usize) -> Ipv4Cidr {
    assert!(
        (1..=MAX_NODES).contains(&i),
        "node index {i} out of 1..={MAX_NODES}"
    );
    Ipv4Cidr::new(Ipv4Addr::new(10, 244, i as u8, 0), 24)
}

/// A dual-stack cluster's IPv6 plan, beside the IPv4 one: the fabric
/// `fd00:172:30::/64` (node `i` at `::(10 + i)`, the outside client at
/// `::64`, i.e. ::100 as on IPv4), node `i`'s pods in
/// `fd00:10:244:<i>::/64` (its `cbr0` at `::1`), ClusterIPs in
/// `fd00:10:96::/112`. Nothing outside the cluster's netns has an IPv6
/// address or route of the plan.
pub const FABRIC_IPV6_PREFIX_LEN: u8 = 64;
/// The fabric's IPv6 prefix (pods route it via their node, as the IPv4
/// fabric).
pub const FABRIC_CIDR_V6: &str = "fd00:172:30::/64";
/// Every node's IPv6 pod CIDR lies in here.
pub const POD_SUPERNET_V6: &str = "fd00:10:244::/56";
/// The IPv6 service range of a dual-stack control plane.
pub const SERVICE_CIDR_V6: &str = "fd00:10:96::/112";

/// A dual-stack cluster's LoadBalancer pools, one per family. No route
/// names them: only the nodes' datapath knows their addresses.
pub const LOAD_BALANCER_POOL: &str = "172.18.255.0/24";
pub const LOAD_BALANCER_POOL_V6: &str = "fd00:172:18:255::/112";

/// skiff-control's flags for a dual-stack cluster: the IPv6 service range
/// and cluster CIDR beside the IPv4 ones, and a LoadBalancer pool per
/// family.
pub fn dual_stack_control_args() -> [String; 3] {
    [
        format!("--service-cluster-ip-range={SERVICE_CIDR},{SERVICE_CIDR_V6}"),
        format!("--cluster-cidr={POD_SUPERNET},{POD_SUPERNET_V6}"),
        format!("--load-balancer-pool={LOAD_BALANCER_POOL},{LOAD_BALANCER_POOL_V6}"),
    ]
}

/// The outside client's IPv6 address on the fabric.
pub const EXT_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x172, 0x30, 0, 0, 0, 0, 100);

/// Node `i`'s IPv6 address on the fabric.
pub fn node_ipv6(i: usize) -> Ipv6Addr {
    let [a, b, c, ..] = Ipv6Addr::new(0xfd00, 0x172, 0x30, 0, 0, 0, 0, 0).segments();
    Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 10 + i as u16)
}

/// Node `i`'s IPv6 pod CIDR: `fd00:10:244:<i>::/64`.
pub fn pod_cidr_v6(i: usize) -> String {
    format!(
        "{}/64",
        Ipv6Addr::new(0xfd00, 0x10, 0x244, i as u16, 0, 0, 0, 0)
    )
}

/// Node `i`'s pods' IPv6 gateway, `cbr0`'s: `fd00:10:244:<i>::1`.
pub fn pod_gateway_v6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x10, 0x244, i as u16, 0, 0, 0, 1)
}

/// The bridge in each node netns that its pods' veths hang off (the pods'
/// gateway; the agents' `--pod-bridge`).
pub(crate) const POD_BRIDGE: &str = "cbr0";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_matches_the_design() {
        assert_eq!(node_ip(1), Ipv4Addr::new(172, 30, 0, 11));
        assert_eq!(node_ip(2), Ipv4Addr::new(172, 30, 0, 12));
        assert_eq!(pod_cidr(2).to_string(), "10.244.2.0/24");
        assert_eq!(pod_cidr(2).host(1), Ipv4Addr::new(10, 244, 2, 1));
        assert!(node_ip(MAX_NODES) < EXT_IP);
        assert!(SERVICE_CIDR.contains(Ipv4Addr::new(10, 111, 255, 255)));
        assert!(!SERVICE_CIDR.contains(Ipv4Addr::new(10, 112, 0, 0)));
        assert!(POD_SUPERNET.contains(pod_cidr(MAX_NODES).host(254)));
        assert_eq!(node_ipv6(2).to_string(), "fd00:172:30::c");
        assert_eq!(pod_cidr_v6(2), "fd00:10:244:2::/64");
        assert_eq!(pod_gateway_v6(2).to_string(), "fd00:10:244:2::1");
    }
}
