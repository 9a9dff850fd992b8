//! The per-packet load balancing decision the TCX and XDP programs share:
//! a packet belongs to a flow with a live conntrack entry, or starts a new
//! flow to a frontend, which is balanced here (source ranges, endpoints,
//! backend, local or remote backend, SNAT port) and gets its two entries.
//!
//! Two conntrack entries are written per flow, one per direction, each
//! saying how to rewrite the packets of that direction:
//!
//! - local backend (a pod on this node, or the node's own address): DNAT
//!   to it; the stack routes or delivers it, and the reply is turned back
//!   into the frontend on egress;
//! - remote backend: DNAT and SNAT to this node's address and a free port,
//!   sent out of the uplink again (the stack would drop a packet arriving
//!   with its own source address); the reply comes back to this node and is
//!   rewritten to the client and sent out again.
//!
//! One generic code serves IPv4 and IPv6 (`PacketAddress`): each family
//! has its own frontend, backend, frontend-address and conntrack maps, and
//! SNATs to this node's address of its family.
use core::ffi::c_void;

use proxy_common::{
    CT_PASS, CT_REDIRECT, CtKeyOf, CtValueOf, SERVICE_FLAG_LOCAL_ONLY, SERVICE_FLAG_SOURCE_RANGES,
    drop_reason,
};

use crate::{
    conntrack::{self, live_entry},
    counters::count_frontend,
    family::PacketAddress,
    fib::is_local,
    maps::CONFIG,
    nat,
    select::{Family, flow_backend, flow_hash},
};

/// What to do with a packet of family `A`.
pub enum Verdict<A> {
    /// Not for a frontend, nor part of a NATed flow: the stack has it.
    NotOurs,
    /// Rewrite it as the entry says.
    Apply(CtValueOf<A>),
    /// Drop it, counted under this `drop_reason`.
    Drop(u32),
    /// The frontend has no endpoints at all: the sender gets an ICMP port
    /// unreachable at once (counted by whoever sends it).
    Reject(u32),
}

/// Whether a packet to `daddr` can be any of `classify`'s business: the
/// first check of every packet, so that traffic to no frontend costs one
/// lookup. A new flow is addressed to a frontend; a packet of a live flow
/// either to its frontend (the forward direction) or, as the reply of a
/// SNATed flow, to this node's address. The one other kind of entry, a
/// local backend's reply to an external client, is rewritten on the
/// uplink's egress, which does not ask this.
#[inline(always)]
pub fn may_be_ours<A: PacketAddress>(daddr: A) -> bool {
    daddr.is_node_address() || daddr.is_frontend_address()
}

/// The verdict for a packet arriving on interface `ifindex` (`ctx` is the
/// program's context, for the FIB lookup): its flow's live entry, or the
/// balancing of a new flow.
#[inline(always)]
pub fn classify<A: PacketAddress>(
    ctx: *mut c_void,
    ifindex: u32,
    key: &CtKeyOf<A>,
    now: u64,
) -> Verdict<A> {
    if let Some(entry) = live_entry(key, now) {
        return Verdict::Apply(entry);
    }
    new_flow(ctx, ifindex, key, now)
}

/// Balances a new flow if it is for a frontend: picks the backend, writes
/// both conntrack entries and returns the forward one.
#[inline(always)]
fn new_flow<A: PacketAddress>(
    ctx: *mut c_void,
    ifindex: u32,
    key: &CtKeyOf<A>,
    now: u64,
) -> Verdict<A> {
    let Some(service) = A::Family::service(key.daddr, key.dport, key.protocol) else {
        return Verdict::NotOurs;
    };
    if service.flags & SERVICE_FLAG_SOURCE_RANGES != 0 && !key.saddr.source_allowed(&service) {
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
    let hash = flow_hash(key, key.saddr.folded(), config.hash_seed);
    let client = key.saddr.affinity_client();
    let Some(backend_id) = flow_backend(&service, client, hash, config.maglev_size) else {
        return Verdict::Drop(drop_reason::NO_BACKEND);
    };
    let Some((backend_address, backend_port)) = A::Family::backend(backend_id) else {
        return Verdict::Drop(drop_reason::NO_BACKEND);
    };

    let entry = |saddr, daddr, sport, dport, action| CtValueOf {
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
    // The node's own address (a listener on the node, as the Ingress
    // proxies behind `skiff-ingress` are) is delivered locally: the FIB
    // does not forward to it, yet it is no remote backend either.
    let node = A::node_address();
    let on_this_node = node.is_some_and(|node| node.same_as(&backend_address))
        || is_local(ctx, ifindex, backend_address);
    // The forward direction's new source, and the reply's key.
    let (saddr, sport, action, reply_key) = if from_uplink && on_this_node {
        let reply_key = CtKeyOf {
            saddr: backend_address,
            daddr: key.saddr,
            sport: backend_port,
            dport: key.sport,
            protocol: key.protocol,
            pad: [0; 3],
        };
        (key.saddr, key.sport, CT_PASS, reply_key)
    } else {
        // The remote backend answers this node, whatever address the client
        // called (a load balancer IP is no address of any node).
        let Some(node) = node else {
            return Verdict::Drop(drop_reason::NO_SNAT_PORT);
        };
        let Some((snat_port, reply_key)) =
            nat::snat_port(key, node, backend_address, backend_port, hash, now)
        else {
            return Verdict::Drop(drop_reason::NO_SNAT_PORT);
        };
        (node, snat_port, CT_REDIRECT, reply_key)
    };
    // The reply path exists before the first packet leaves. Each entry is
    // built just before its write, so that the two (large for IPv6) are
    // not on the stack at once.
    let reply = entry(key.daddr, key.saddr, key.dport, key.sport, action);
    if !conntrack::insert(&reply_key, &reply) {
        return Verdict::NotOurs;
    }
    let forward = entry(saddr, backend_address, sport, backend_port, action);
    if !conntrack::insert(key, &forward) {
        return Verdict::NotOurs;
    }
    count_frontend(service.id, |stats| stats.connects += 1);
    Verdict::Apply(forward)
}
