//! Per-packet load balancing decisions, shared by the TCX and XDP programs:
//! the conntrack entry of a packet's flow, or the balancing of a new flow to
//! a frontend (source ranges, endpoints, affinity, Maglev, local or remote
//! backend, SNAT port).
//!
//! Two conntrack entries are written per flow, one per direction, each
//! saying how to rewrite the packets of that direction:
//!
//! - local backend: DNAT to the pod; the stack routes it to the pod, and
//!   the reply is turned back into the frontend on egress;
//! - remote backend: DNAT and SNAT to this node's address and a free port,
//!   sent out of the uplink again (the stack would drop a packet arriving
//!   with its own source address); the reply comes back to this node and is
//!   rewritten to the client and sent out again.
use core::ffi::c_void;

use aya_ebpf::{bindings::bpf_fib_lookup, helpers::bpf_fib_lookup as fib_lookup};
use proxy_common::{
    AFFINITY_CLIENT_ADDRESS, BackendId, CT_PASS, CT_REDIRECT, CtKey, CtValue, MAGLEV_MAX_SIZE,
    PROTO_TCP, SERVICE_FLAG_AFFINITY, SERVICE_FLAG_EXTERNAL, SERVICE_FLAG_LOCAL_ONLY,
    SERVICE_FLAG_SOURCE_RANGES, ServiceKey, ServiceValue, SourceRange, drop_reason,
};

use crate::{
    maps::{BACKENDS, CONFIG, CONNTRACK, MAGLEV, SERVICES, SOURCE_RANGES},
    shared::{count_frontend, slot_backend, with_affinity},
};

const AF_INET: u8 = 2;
const FIB_SUCCESS: i64 = 0;
const FIB_NO_NEIGH: i64 = 7;

const SECOND_NS: u64 = 1_000_000_000;
/// Idle lifetimes of a flow's entries: long for an open TCP connection,
/// short once a FIN or RST was seen, in between for UDP (as Linux's own
/// conntrack does for an assured UDP stream).
const TCP_TIMEOUT_NS: u64 = 2 * 3600 * SECOND_NS;
const TCP_CLOSING_TIMEOUT_NS: u64 = 10 * SECOND_NS;
const UDP_TIMEOUT_NS: u64 = 60 * SECOND_NS;

/// SNAT ports for flows to remote backends: the range Linux leaves to
/// ephemeral ports by default, tried at a few hashed places.
const SNAT_PORT_FIRST: u32 = 32_768;
const SNAT_PORT_COUNT: u32 = 28_232;
const SNAT_ATTEMPTS: u32 = 4;

/// What to do with a packet.
pub enum Verdict {
    /// Not for a frontend, nor part of a NATed flow: the stack has it.
    NotOurs,
    /// Rewrite it as the entry says.
    Apply(CtValue),
    /// Drop it, counted under this `drop_reason`.
    Drop(u32),
    /// The frontend has no endpoints at all: the sender gets an ICMP port
    /// unreachable at once (counted by whoever sends it).
    Reject(u32),
}

/// The entry for `key` unless it has expired or its backend is gone (the
/// flow is then balanced afresh).
#[inline(always)]
pub fn live_entry(key: &CtKey, now: u64) -> Option<CtValue> {
    // SAFETY: read and copied.
    let entry = (unsafe { CONNTRACK.get(key) }).copied()?;
    let timeout = match (key.protocol, entry.closing) {
        (PROTO_TCP, 0) => TCP_TIMEOUT_NS,
        (PROTO_TCP, _) => TCP_CLOSING_TIMEOUT_NS,
        _ => UDP_TIMEOUT_NS,
    };
    // SAFETY: only checked for presence.
    let backend_exists = unsafe { BACKENDS.get(entry.backend_id) }.is_some();
    (now.wrapping_sub(entry.last_seen_ns) <= timeout && backend_exists).then_some(entry)
}

/// Counts a packet of `len` bytes for the flow's frontend, and keeps the
/// flow's entry alive: refreshed at most once a second, and at once when
/// the flow starts closing.
#[inline(always)]
pub fn touch(key: &CtKey, entry: &CtValue, now: u64, tcp_closing: bool, len: u64) {
    count_frontend(entry.service_id, |stats| {
        stats.packets += 1;
        stats.bytes += len;
    });
    let closing = tcp_closing && entry.closing == 0;
    if closing || now.wrapping_sub(entry.last_seen_ns) > SECOND_NS {
        let refreshed = CtValue {
            last_seen_ns: now,
            closing: entry.closing | u8::from(tcp_closing),
            ..*entry
        };
        // Failing to refresh only shortens the entry's life.
        let _ = CONNTRACK.insert(key, &refreshed, 0);
    }
}

/// The verdict for a packet arriving on interface `ifindex` (`ctx` is the
/// program's context, for the FIB lookup): its flow's live entry, or the
/// balancing of a new flow.
#[inline(always)]
pub fn classify(ctx: *mut c_void, ifindex: u32, key: &CtKey, now: u64) -> Verdict {
    if let Some(entry) = live_entry(key, now) {
        return Verdict::Apply(entry);
    }
    new_flow(ctx, ifindex, key, now)
}

/// Balances a new flow if it is for a frontend: picks the backend, writes
/// both conntrack entries and returns the forward one.
#[inline(always)]
fn new_flow(ctx: *mut c_void, ifindex: u32, key: &CtKey, now: u64) -> Verdict {
    let frontend = ServiceKey {
        address: key.daddr,
        port: key.dport,
        protocol: key.protocol,
        pad: 0,
    };
    // SAFETY: read and copied.
    let Some(service) = (unsafe { SERVICES.get(&frontend) }).copied() else {
        return Verdict::NotOurs;
    };
    if service.flags & SERVICE_FLAG_SOURCE_RANGES != 0 && !source_allowed(&service, key.saddr) {
        return Verdict::Drop(drop_reason::SOURCE_RANGE);
    }
    if service.backend_count == 0 {
        if service.flags & SERVICE_FLAG_LOCAL_ONLY != 0 {
            return Verdict::Drop(drop_reason::NO_LOCAL_ENDPOINTS);
        }
        return Verdict::Reject(service.id);
    }
    // Read once: every decision below takes a setting from it.
    let config = CONFIG.get(0).copied().unwrap_or_default();
    let hash = flow_hash(key, config.hash_seed);
    let Some(backend_id) = choose_backend(&service, key, hash, config.maglev_size) else {
        return Verdict::Drop(drop_reason::NO_BACKEND);
    };
    // SAFETY: read and copied.
    let Some(backend) = (unsafe { BACKENDS.get(backend_id) }).copied() else {
        return Verdict::Drop(drop_reason::NO_BACKEND);
    };

    let entry = |saddr, daddr, sport, dport, action| CtValue {
        last_seen_ns: now,
        saddr,
        daddr,
        backend_id,
        sport,
        dport,
        action,
        closing: 0,
        pad: [0; 2],
        service_id: service.id,
    };
    // From the uplink, a local backend needs only DNAT: its replies leave
    // through the uplink's egress program. From a pod interface they would
    // not: a backend on the same bridge answers the client directly, so
    // such flows are SNATed to the node like remote ones (kube-proxy's
    // hairpin masquerade).
    let from_uplink = config.uplink_ifindex == 0 || ifindex == config.uplink_ifindex;
    let (forward, reply_key, reply) = if from_uplink && is_local(ctx, ifindex, backend.address) {
        let reply_key = CtKey {
            saddr: backend.address,
            daddr: key.saddr,
            sport: backend.port,
            dport: key.sport,
            protocol: key.protocol,
            pad: [0; 3],
        };
        (
            entry(key.saddr, backend.address, key.sport, backend.port, CT_PASS),
            reply_key,
            entry(key.daddr, key.saddr, key.dport, key.sport, CT_PASS),
        )
    } else {
        // The remote backend answers this node, whatever address the client
        // called (a load balancer IP is no address of any node).
        let node = config.node_address;
        if node == 0 {
            return Verdict::Drop(drop_reason::NO_SNAT_PORT);
        }
        let Some((snat_port, reply_key)) =
            snat_port(key, node, backend.address, backend.port, hash, now)
        else {
            return Verdict::Drop(drop_reason::NO_SNAT_PORT);
        };
        (
            entry(node, backend.address, snat_port, backend.port, CT_REDIRECT),
            reply_key,
            entry(key.daddr, key.saddr, key.dport, key.sport, CT_REDIRECT),
        )
    };
    // The reply path exists before the first packet leaves.
    if CONNTRACK.insert(&reply_key, &reply, 0).is_err()
        || CONNTRACK.insert(key, &forward, 0).is_err()
    {
        return Verdict::NotOurs;
    }
    count_frontend(service.id, |stats| stats.connects += 1);
    Verdict::Apply(forward)
}

#[inline(always)]
fn source_allowed(service: &ServiceValue, source: u32) -> bool {
    let key = aya_ebpf::maps::lpm_trie::Key::new(
        64,
        SourceRange {
            service_id: service.id,
            address: source,
        },
    );
    SOURCE_RANGES.get(&key).is_some()
}

/// The backend of a new flow: the client address's sticky one under
/// affinity, else the Maglev table's pick for the flow hash (external
/// frontends), else the hash's slot.
#[inline(always)]
fn choose_backend(
    service: &ServiceValue,
    key: &CtKey,
    hash: u32,
    maglev_size: u32,
) -> Option<BackendId> {
    if service.flags & SERVICE_FLAG_AFFINITY != 0 {
        let client = AFFINITY_CLIENT_ADDRESS | u64::from(key.saddr);
        return with_affinity(service, client, || {
            Some(flow_slot(service, hash, maglev_size))
        });
    }
    slot_backend(service.id, flow_slot(service, hash, maglev_size))
}

/// The slot a flow hashing to `hash` goes to. A Maglev table whose entry
/// points past the count (the agent is just shrinking the frontend) falls
/// back to the plain hash.
#[inline(always)]
fn flow_slot(service: &ServiceValue, hash: u32, maglev_size: u32) -> u32 {
    let fallback = hash % service.backend_count;
    if service.flags & SERVICE_FLAG_EXTERNAL == 0 {
        return fallback;
    }
    let size = maglev_size as usize;
    if size == 0 {
        return fallback;
    }
    let Some(table) = MAGLEV.get_ptr(service.id) else {
        return fallback;
    };
    // The verifier does not bound a remainder by its divisor: this check
    // bounds the index (and so the size must not be checked before it, or
    // the compiler would drop this one as redundant).
    let index = hash as usize % size;
    if index >= MAGLEV_MAX_SIZE {
        return fallback;
    }
    // SAFETY: the pointer is to a live map value, and `index` is in bounds.
    let slot = unsafe { (*table).slots[index] };
    if slot < service.backend_count {
        slot
    } else {
        fallback
    }
}

/// A source port on this node's address `node` for a flow to a remote backend,
/// and the key its replies will carry; `None` if the hashed candidates are
/// all taken by live flows.
#[inline(always)]
fn snat_port(
    key: &CtKey,
    node: u32,
    backend_address: u32,
    backend_port: u16,
    hash: u32,
    now: u64,
) -> Option<(u16, CtKey)> {
    for attempt in 0..SNAT_ATTEMPTS {
        let port = SNAT_PORT_FIRST
            + (hash >> 8).wrapping_add(attempt.wrapping_mul(7919)) % SNAT_PORT_COUNT;
        let port = (port as u16).to_be();
        let reply_key = CtKey {
            saddr: backend_address,
            daddr: node,
            sport: backend_port,
            dport: port,
            protocol: key.protocol,
            pad: [0; 3],
        };
        if live_entry(&reply_key, now).is_none() {
            return Some((port, reply_key));
        }
    }
    None
}

/// A FIB lookup for a packet from `saddr` to `daddr` arriving on `ifindex`:
/// the result code, and the egress interface on success.
#[inline(always)]
fn route(ctx: *mut c_void, ifindex: u32, saddr: u32, daddr: u32) -> (i64, bpf_fib_lookup) {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.ifindex = ifindex;
    params.__bindgen_anon_3.ipv4_src = saddr;
    params.__bindgen_anon_4.ipv4_dst = daddr;
    // SAFETY: `ctx` is the running program's context and `params` a live,
    // initialised lookup request of its size.
    let result = unsafe {
        fib_lookup(
            ctx,
            &mut params,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    (result, params)
}

/// Whether the stack routes `address` out of another device than the one
/// the packet came in on (the uplink): a pod on this node.
#[inline(always)]
fn is_local(ctx: *mut c_void, ifindex: u32, address: u32) -> bool {
    let (result, params) = route(ctx, ifindex, 0, address);
    (result == FIB_SUCCESS || result == FIB_NO_NEIGH) && params.ifindex != ifindex
}

/// The interface the stack routes a packet from `saddr` to `daddr` out of.
#[inline(always)]
pub fn egress_ifindex(ctx: *mut c_void, ifindex: u32, saddr: u32, daddr: u32) -> Option<u32> {
    let (result, params) = route(ctx, ifindex, saddr, daddr);
    (result == FIB_SUCCESS || result == FIB_NO_NEIGH).then_some(params.ifindex)
}

/// The hash of a flow, without its destination address: a flow to an
/// external frontend hashes alike on every node it may enter (a NodePort
/// is reached at each node's own address), mixed with the cluster's seed.
#[inline(always)]
fn flow_hash(key: &CtKey, seed: u32) -> u32 {
    let ports = (u32::from(key.sport) << 16) | u32::from(key.dport);
    let mut hash = key.saddr ^ ports.rotate_left(7) ^ u32::from(key.protocol) ^ seed;
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x7feb_352d);
    hash ^= hash >> 15;
    hash = hash.wrapping_mul(0x846c_a68b);
    hash ^ (hash >> 16)
}
