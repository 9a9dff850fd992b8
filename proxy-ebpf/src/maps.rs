//! The maps of the datapath. All are pinned by name; the agent gives the
//! loader its pin directory, so a restarted agent reuses them.
use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{
        Array, DevMapHash, HashMap, LpmTrie, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf,
        lpm_trie::Key,
    },
};
use proxy_common::{
    AffinityKey, AffinityValue, Backend, Backend6, BackendId, BackendSlotKey,
    CONNECT_OUTCOMES_BYTES, CtKey, CtKey6, CtValue, CtValue6, DatapathConfig, FrontendStats,
    Ipv6Words, MaglevTable, ORPHANS_CAPACITY, OrphanKey, OrphanKey6, ServiceCidr6, ServiceKey,
    ServiceKey6, ServiceValue, SockRevNatKey, SockRevNatKey6, SockRevNatValue, SockRevNatValue6,
    SourceRange, SourceRange6, capacity, drop_reason,
};

#[map(name = "skiff_services")]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> =
    HashMap::pinned(capacity::SERVICES, BPF_F_NO_PREALLOC);

#[map(name = "skiff_slots")]
pub static BACKEND_SLOTS: HashMap<BackendSlotKey, BackendId> =
    HashMap::pinned(capacity::BACKEND_SLOTS, BPF_F_NO_PREALLOC);

#[map(name = "skiff_backends")]
pub static BACKENDS: HashMap<BackendId, Backend> =
    HashMap::pinned(capacity::BACKENDS, BPF_F_NO_PREALLOC);

#[map(name = "skiff_sock_rnat")]
pub static SOCK_REV_NAT: LruHashMap<SockRevNatKey, SockRevNatValue> =
    LruHashMap::pinned(capacity::SOCK_REV_NAT, 0);

/// IPv6 frontends; their ids share one space with the IPv4 ones, so the
/// slots, affinity and stats maps serve both.
#[map(name = "skiff_services6")]
pub static SERVICES6: HashMap<ServiceKey6, ServiceValue> =
    HashMap::pinned(capacity::SERVICES, BPF_F_NO_PREALLOC);

/// IPv6 backends, by ids from the one backend id space.
#[map(name = "skiff_backends6")]
pub static BACKENDS6: HashMap<BackendId, Backend6> =
    HashMap::pinned(capacity::BACKENDS, BPF_F_NO_PREALLOC);

#[map(name = "skiff_sk_rnat6")]
pub static SOCK_REV_NAT6: LruHashMap<SockRevNatKey6, SockRevNatValue6> =
    LruHashMap::pinned(capacity::SOCK_REV_NAT, 0);

/// The IPv6 service CIDR (one entry).
#[map(name = "skiff_config6")]
pub static CONFIG6: Array<ServiceCidr6> = Array::pinned(1, 0);

#[map(name = "skiff_config")]
pub static CONFIG: Array<DatapathConfig> = Array::pinned(1, 0);

#[map(name = "skiff_affinity")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> =
    LruHashMap::pinned(capacity::AFFINITY, 0);

/// Per-frontend counters, keyed by frontend id; the agent removes an entry
/// with its frontend.
#[map(name = "skiff_fe_stats")]
pub static FRONTEND_STATS: PerCpuHashMap<u32, FrontendStats> =
    PerCpuHashMap::pinned(capacity::SERVICES, BPF_F_NO_PREALLOC);

/// Failed connects and sends, by `drop_reason`.
#[map(name = "skiff_drops")]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::pinned(drop_reason::COUNT, 0);

/// Per-packet NAT state: one entry per direction of each external flow.
#[map(name = "skiff_ct")]
pub static CONNTRACK: LruHashMap<CtKey, CtValue> = LruHashMap::pinned(capacity::CONNTRACK, 0);

/// The IPv6 twin of `skiff_ct`.
#[map(name = "skiff_ct6")]
pub static CONNTRACK6: LruHashMap<CtKey6, CtValue6> = LruHashMap::pinned(capacity::CONNTRACK, 0);

/// Maglev tables of the external frontends, keyed by frontend id.
#[map(name = "skiff_maglev")]
pub static MAGLEV: HashMap<u32, MaglevTable> = HashMap::pinned(capacity::MAGLEV, BPF_F_NO_PREALLOC);

/// `loadBalancerSourceRanges` of the frontends that have them.
#[map(name = "skiff_src_ranges")]
pub static SOURCE_RANGES: LpmTrie<SourceRange, u8> =
    LpmTrie::pinned(capacity::SOURCE_RANGES, BPF_F_NO_PREALLOC);

/// The IPv6 twin of `skiff_src_ranges`.
#[map(name = "skiff_src_rng6")]
pub static SOURCE_RANGES6: LpmTrie<SourceRange6, u8> =
    LpmTrie::pinned(capacity::SOURCE_RANGES, BPF_F_NO_PREALLOC);

/// Where `select::source_allowed6` builds its trie key (one entry per
/// CPU): in a map value rather than on the stack, which the IPv6 ingress
/// path has all but used up.
#[map(name = "skiff_src_key6")]
pub static SOURCE_KEY6: PerCpuArray<Key<SourceRange6>> = PerCpuArray::with_max_entries(1, 0);

/// Every address some frontend has (the value is unused): the per-packet
/// programs pass a packet to any other address, and not to this node's,
/// after this one lookup. The agent writes an address before its first
/// frontend and removes it after its last.
#[map(name = "skiff_fe_addrs")]
pub static FRONTEND_ADDRESSES: HashMap<u32, u8> =
    HashMap::pinned(capacity::FRONTEND_ADDRESSES, BPF_F_NO_PREALLOC);

/// The IPv6 twin of `skiff_fe_addrs`: every IPv6 address some frontend has.
#[map(name = "skiff_fe_addrs6")]
pub static FRONTEND_ADDRESSES6: HashMap<Ipv6Words, u8> =
    HashMap::pinned(capacity::FRONTEND_ADDRESSES, BPF_F_NO_PREALLOC);

/// This node's IPv6 address (one entry; all zero: none), the source of the
/// IPv6 flows it SNATs to remote backends. A map of its own, so that
/// `skiff_config` keeps its layout.
#[map(name = "skiff_node6")]
pub static NODE_ADDRESS6: Array<Ipv6Words> = Array::pinned(1, 0);

/// The node side of the veth of each pod on this node, by the pod's
/// address: the XDP program sends frames for local backends straight into
/// it (`xdp_nat`). The agent adds a pod once the pod's side of the veth can
/// take redirected frames (`proxy::datapath::pod_ports`); the kernel drops
/// an entry when its device goes away.
#[map(name = "skiff_pod_ports")]
pub static POD_PORTS: DevMapHash = DevMapHash::pinned(capacity::POD_PORTS, 0);

/// The IPv6 twin of `skiff_pod_ports`: the ifindex of the node side of
/// each pod's veth, by the pod's IPv6 address. A plain hash map, as a
/// device map's keys are 4 bytes; the XDP program redirects by ifindex
/// (`family::PacketAddress::redirect_to_pod`), and the agent removes an
/// entry with its pod (the kernel does not, unlike the device map's).
#[map(name = "skiff_podports6")]
pub static POD_PORTS6: HashMap<Ipv6Words, u32> =
    HashMap::pinned(capacity::POD_PORTS, BPF_F_NO_PREALLOC);

/// (frontend, backend) pairs whose connected UDP sockets the socket-reset
/// iterator destroys; filled by the agent for one run at a time.
#[map(name = "skiff_orphans")]
pub static ORPHANS: HashMap<OrphanKey, u8> = HashMap::with_max_entries(ORPHANS_CAPACITY, 0);

/// The IPv6 twin of `ORPHANS`, for the IPv6 iterator.
#[map(name = "skiff_orphans6")]
pub static ORPHANS6: HashMap<OrphanKey6, u8> = HashMap::with_max_entries(ORPHANS_CAPACITY, 0);

/// How connects through frontends with outlier detection ended, for the
/// agent's passive health checks (`outlier`).
#[map(name = "skiff_connects")]
pub static CONNECT_OUTCOMES: RingBuf = RingBuf::with_byte_size(CONNECT_OUTCOMES_BYTES, 0);
