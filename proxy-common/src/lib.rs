//! Keys and values of skiff's BPF maps, shared by the eBPF programs and the
//! agent. Every type is `#[repr(C)]` with explicit padding fields, so the byte
//! layout is the same on both sides and no uninitialised padding reaches a map
//! key (the kernel hashes keys byte by byte).
//!
//! The layout of a pinned map is an ABI between agent versions: an agent that
//! restarts reuses the maps the previous one pinned. Fields that a later
//! feature needs are therefore reserved now rather than added later.
#![no_std]

#[cfg(feature = "annotations")]
extern crate std;

#[cfg(feature = "annotations")]
pub mod outlier_annotation;

mod connect_outcome;
mod ipv6;
mod sock_reset;
pub use connect_outcome::{
    CONNECT_ESTABLISHED, CONNECT_OUTCOMES_BYTES, CONNECT_OUTCOMES_MAP, CONNECT_REFUSED,
    CONNECT_TIMED_OUT, ConnectOutcome, ConnectOutcome6,
};
pub use ipv6::{
    Backend6, CtKey6, CtValue6, Ipv6Words, ServiceCidr6, ServiceKey6, SockRevNatKey6,
    SockRevNatValue6, SourceRange6, ipv6_octets, ipv6_words,
};
pub use sock_reset::{
    ORPHANS_CAPACITY, ORPHANS_MAP, ORPHANS6_MAP, OrphanKey, OrphanKey6, SocketReset, SocketReset6,
};

/// IP protocol numbers the datapath balances.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// The directory, under an agent's pin directory, of the maps of this
/// layout version. A change to any map's key, value or capacity bumps it;
/// an agent finding another version's directory switches over to its own
/// (see the agent's loader).
pub const MAPS_DIR: &str = "maps-v2";

/// Map names. They are also the file names of the pins under the agent's
/// bpffs directory (`<bpffs>/<MAPS_DIR>/<name>`), so they must stay
/// within the kernel's 15-character object name limit.
pub mod map_names {
    pub const SERVICES: &str = "skiff_services";
    pub const BACKEND_SLOTS: &str = "skiff_slots";
    pub const BACKENDS: &str = "skiff_backends";
    pub const SOCK_REV_NAT: &str = "skiff_sock_rnat";
    pub const CONFIG: &str = "skiff_config";
    pub const AFFINITY: &str = "skiff_affinity";
    pub const FRONTEND_STATS: &str = "skiff_fe_stats";
    pub const DROPS: &str = "skiff_drops";
    pub const CONNTRACK: &str = "skiff_ct";
    pub const MAGLEV: &str = "skiff_maglev";
    pub const SOURCE_RANGES: &str = "skiff_src_ranges";
    pub const FRONTEND_ADDRESSES: &str = "skiff_fe_addrs";
    /// The IPv6 twins of the socket path's maps (`ipv6`).
    pub const SERVICES6: &str = "skiff_services6";
    pub const BACKENDS6: &str = "skiff_backends6";
    pub const SOCK_REV_NAT6: &str = "skiff_sk_rnat6";
    pub const CONFIG6: &str = "skiff_config6";
    pub const POD_PORTS: &str = "skiff_pod_ports";
    /// The IPv6 twins of the per-packet path's maps.
    pub const CONNTRACK6: &str = "skiff_ct6";
    pub const FRONTEND_ADDRESSES6: &str = "skiff_fe_addrs6";
    /// This node's IPv6 address: the source of IPv6 flows it forwards to
    /// remote backends (one entry; all zero: none).
    pub const NODE_ADDRESS6: &str = "skiff_node6";
    /// The IPv6 twin of `skiff_src_ranges` (whose kernel name the 15
    /// characters cut to `skiff_src_range`).
    pub const SOURCE_RANGES6: &str = "skiff_src_rng6";
    /// The IPv6 twin of `POD_PORTS` (a hash map of ifindexes: a device
    /// map's keys are 4 bytes).
    pub const POD_PORTS6: &str = "skiff_podports6";
}

/// Map capacities, sized for 100 000 services with up to 10 endpoints each
/// (the benchmark's largest sweep). The large hash maps are created with
/// `BPF_F_NO_PREALLOC`, so an idle node does not pay for that headroom.
pub mod capacity {
    pub const SERVICES: u32 = 262_144;
    pub const BACKENDS: u32 = 262_144;
    pub const BACKEND_SLOTS: u32 = 2_097_152;
    /// One entry per socket connected or sending through a service; LRU, so
    /// the oldest sockets' entries are recycled first.
    pub const SOCK_REV_NAT: u32 = 131_072;
    /// One entry per client and affinity frontend; LRU, so clients idle the
    /// longest are forgotten first.
    pub const AFFINITY: u32 = 65_536;
    /// Two entries per NATed flow (one per direction); LRU.
    pub const CONNTRACK: u32 = 262_144;
    /// Frontends reachable from outside the node, each with a Maglev table
    /// (64 KiB at the largest size; allocated only for frontends that exist).
    pub const MAGLEV: u32 = 16_384;
    /// `loadBalancerSourceRanges` entries over all frontends, per family.
    pub const SOURCE_RANGES: u32 = 65_536;
    /// The distinct addresses of all frontends: at most one per frontend.
    pub const FRONTEND_ADDRESSES: u32 = SERVICES;
    /// Addresses of the pods on this node (a node's pod CIDR is a /24 in
    /// the local cluster; kubelet's default is 110 pods).
    pub const POD_PORTS: u32 = 1_024;
}

/// Why the datapath failed a connect or send: indexes of the drops map.
pub mod drop_reason {
    /// A frontend with no usable endpoint.
    pub const NO_ENDPOINTS: u32 = 0;
    /// An address in the service CIDR that no frontend has.
    pub const UNKNOWN_SERVICE: u32 = 1;
    /// A frontend whose slot or backend entry was missing (a bug).
    pub const NO_BACKEND: u32 = 2;
    /// A NodePort flow to a remote backend found no free SNAT port.
    pub const NO_SNAT_PORT: u32 = 3;
    /// An external packet to an `externalTrafficPolicy: Local` frontend on
    /// a node without a local endpoint: dropped, so that a load balancer's
    /// health check, not the client, finds out.
    pub const NO_LOCAL_ENDPOINTS: u32 = 4;
    /// A source outside the frontend's `loadBalancerSourceRanges`.
    pub const SOURCE_RANGE: u32 = 5;
    /// A packet the per-packet path cannot rewrite safely (IP options on a
    /// packet that needed an ICMP error, for one).
    pub const MALFORMED: u32 = 6;
    pub const COUNT: u32 = 7;
    /// Metric label values, by index.
    pub const NAMES: [&str; COUNT as usize] = [
        "no_endpoints",
        "unknown_service",
        "no_backend",
        "no_snat_port",
        "no_local_endpoints",
        "source_range",
        "malformed",
    ];
}

/// `ServiceValue::flags`: the frontend has `sessionAffinity: ClientIP`.
pub const SERVICE_FLAG_AFFINITY: u32 = 1;
/// The frontend is reached from outside the node (a NodePort, a load
/// balancer ingress IP or an external IP): the per-packet path picks the
/// backend of a new flow from the frontend's Maglev table, so every node
/// picks the same one.
pub const SERVICE_FLAG_EXTERNAL: u32 = 2;
/// `externalTrafficPolicy: Local`: the backends are this node's own, and
/// with none, external packets are dropped rather than refused.
pub const SERVICE_FLAG_LOCAL_ONLY: u32 = 4;
/// `loadBalancerSourceRanges`: only sources in the frontend's ranges (the
/// source ranges map) may open flows.
pub const SERVICE_FLAG_SOURCE_RANGES: u32 = 8;
/// The Service asks for outlier detection (`skiff.io/outlier-detection`):
/// the `sock_ops` program reports how connects through the frontend end.
pub const SERVICE_FLAG_OUTLIER_DETECTION: u32 = 16;

/// The largest Maglev table (a prime), and the size of every table value;
/// a smaller configured size uses a prefix of it.
pub const MAGLEV_MAX_SIZE: usize = 16_381;

/// A service frontend: a ClusterIP and one of its ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// IPv4 address, network byte order (as in `bpf_sock_addr.user_ip4`).
    pub address: u32,
    /// Port, network byte order (as in `bpf_sock_addr.user_port`).
    pub port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub protocol: u8,
    pub pad: u8,
}

/// What the datapath knows about one frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceValue {
    /// Frontend id: the first half of every `BackendSlotKey` of this frontend.
    pub id: u32,
    /// Slots `0..backend_count` hold backend ids. Zero means the service
    /// exists but has no endpoints: connects are refused at once.
    pub backend_count: u32,
    /// `SERVICE_FLAG_*` bits.
    pub flags: u32,
    /// With `SERVICE_FLAG_AFFINITY`: seconds a client keeps its backend
    /// after its last connection.
    pub affinity_timeout: u32,
}

/// One slot of a frontend's backend list.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendSlotKey {
    pub service_id: u32,
    pub slot: u32,
}

/// The value of a backend slot: a backend id, key of the backends map.
pub type BackendId = u32;

/// A backend: an endpoint address and target port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    /// IPv4 address, network byte order.
    pub address: u32,
    /// Port, network byte order.
    pub port: u16,
    pub protocol: u8,
    pub pad: u8,
}

/// Reverse translation for one socket: the socket that was sent to `address`
/// and `port` (a backend) on behalf of a service. Keyed by socket cookie so
/// that a direct connection to the same backend is never rewritten, and two
/// services sharing a backend stay apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockRevNatKey {
    pub cookie: u64,
    /// Backend IPv4 address, network byte order.
    pub address: u32,
    /// Backend port, network byte order.
    pub port: u16,
    pub pad: u16,
}

/// The frontend a socket's backend traffic is shown as.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockRevNatValue {
    /// Service IPv4 address, network byte order.
    pub address: u32,
    /// Service port, network byte order.
    pub port: u16,
    pub pad: u16,
}

/// A client of an affinity frontend. The socket hooks run before the
/// client's source address is chosen, so there the client is its network
/// namespace (one per pod), as the namespace cookie names it. The
/// per-packet path sees the source address: its clients are
/// `AFFINITY_CLIENT_ADDRESS | address`, which no namespace cookie (a
/// counter from 1) reaches.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    pub client: u64,
    pub service_id: u32,
    pub pad: u32,
}

/// Marks an `AffinityKey::client` that is a source address.
pub const AFFINITY_CLIENT_ADDRESS: u64 = 1 << 63;

/// The Maglev lookup table of one external frontend: entry `hash % size`
/// holds the backend slot of the flows hashing there.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevTable {
    pub slots: [u32; MAGLEV_MAX_SIZE],
}

/// One `loadBalancerSourceRanges` entry: an LPM trie key whose data is the
/// frontend id (always matched whole) followed by the range's address, so
/// `prefix_len` is 32 plus the range's length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRange {
    pub service_id: u32,
    /// Network byte order.
    pub address: u32,
}

/// The backend a client sticks to, and where it sat when chosen: the entry
/// only holds while that slot still holds that backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AffinityValue {
    /// `bpf_ktime_get_ns` of the client's last connection.
    pub last_used_ns: u64,
    pub backend_id: BackendId,
    pub slot: u32,
}

/// What one frontend's socket hooks did, per CPU (summed by the reader).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrontendStats {
    /// Connects sent to a backend (TCP, and connected UDP).
    pub connects: u64,
    /// Unconnected UDP datagrams sent to a backend.
    pub udp_sends: u64,
    /// Connects and sends refused: no usable endpoint.
    pub refused: u64,
    /// Packets and bytes of the frontend's per-packet flows, both
    /// directions (the socket hooks see connections, not packets).
    pub packets: u64,
    pub bytes: u64,
}

/// A packet's flow as the uplink sees it: addresses and ports in network
/// byte order, as they sit in the headers. `A` is the address: `u32` for
/// IPv4 (`CtKey`), `Ipv6Words` for IPv6 (`CtKey6`); the layout is the same
/// `#[repr(C)]` struct with the address fields sized for the family.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtKeyOf<A> {
    pub saddr: A,
    pub daddr: A,
    pub sport: u16,
    pub dport: u16,
    pub protocol: u8,
    pub pad: [u8; 3],
}

/// An IPv4 packet's flow.
pub type CtKey = CtKeyOf<u32>;

/// `CtValue::action`: rewrite, then let the stack route the packet (it is
/// for a pod on this node, or leaves from a pod on this node).
pub const CT_PASS: u8 = 0;
/// Rewrite, then send the packet out of the uplink again (to a remote
/// backend, or back to the client): it now carries this node's address as
/// its source, which the stack would drop as a martian on ingress.
pub const CT_REDIRECT: u8 = 1;

/// How to rewrite every packet of one direction of a NATed flow (`A` as in
/// `CtKeyOf`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtValueOf<A> {
    /// `bpf_ktime_get_ns` of the last packet (refreshed at most once a
    /// second).
    pub last_seen_ns: u64,
    /// The rewritten source and destination, network byte order.
    pub saddr: A,
    pub daddr: A,
    /// The backend of the flow; a flow whose backend is gone is balanced
    /// afresh.
    pub backend_id: BackendId,
    pub sport: u16,
    pub dport: u16,
    /// `CT_PASS` or `CT_REDIRECT`.
    pub action: u8,
    /// A TCP FIN or RST was seen: the entry expires soon.
    pub closing: u8,
    pub pad: [u8; 2],
    /// The frontend the flow belongs to, for its counters.
    pub service_id: u32,
}

/// How to rewrite one direction of a NATed IPv4 flow.
pub type CtValue = CtValueOf<u32>;

/// Node-wide settings the agent gives the programs: the only entry of the
/// config array. All zero (the default) disables what each field enables.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatapathConfig {
    /// The service CIDR, network byte order. A connect into it that matches
    /// no frontend is refused at once instead of leaving the node.
    pub service_cidr_address: u32,
    /// Its netmask, network byte order; zero disables the check.
    pub service_cidr_mask: u32,
    /// Entries of every Maglev table in use (a prime up to
    /// `MAGLEV_MAX_SIZE`).
    pub maglev_size: u32,
    /// Mixed into the per-packet flow hash; the same on every node, so
    /// that a flow hashes alike wherever it enters.
    pub hash_seed: u32,
    /// This node's address, network byte order: the source of flows it
    /// forwards to remote backends (SNAT). Zero: only local backends are
    /// reachable per packet.
    pub node_address: u32,
    /// The uplink's interface index: a backend the stack routes out of any
    /// other interface is on this node.
    pub uplink_ifindex: u32,
}

/// `10.96.0.10:80/TCP`
impl core::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let address = core::net::Ipv4Addr::from(self.address.to_ne_bytes());
        let protocol = match self.protocol {
            PROTO_TCP => "TCP",
            PROTO_UDP => "UDP",
            _ => "?",
        };
        write!(f, "{address}:{}/{protocol}", u16::from_be(self.port))
    }
}

/// `10.244.1.2:8080`
impl core::fmt::Display for Backend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let address = core::net::Ipv4Addr::from(self.address.to_ne_bytes());
        write!(f, "{address}:{}", u16::from_be(self.port))
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are `#[repr(C)]`, made only of integers, with no
    // implicit padding (each has explicit `pad` fields where needed).
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for ServiceValue {}
    unsafe impl aya::Pod for BackendSlotKey {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for SockRevNatKey {}
    unsafe impl aya::Pod for SockRevNatValue {}
    unsafe impl aya::Pod for DatapathConfig {}
    unsafe impl aya::Pod for AffinityKey {}
    unsafe impl aya::Pod for AffinityValue {}
    unsafe impl aya::Pod for FrontendStats {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
    unsafe impl aya::Pod for MaglevTable {}
    unsafe impl aya::Pod for SourceRange {}
}
