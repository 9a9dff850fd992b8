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
use core::ffi::c_void;

use proxy_common::{
    CT_PASS, CT_REDIRECT, CtKey, CtValue, SERVICE_FLAG_LOCAL_ONLY, SERVICE_FLAG_SOURCE_RANGES,
    drop_reason,
};

use crate::{
    conntrack::{self, live_entry},
    counters::count_frontend,
    fib::is_local,
    maps::{CONFIG, FRONTEND_ADDRESSES},
    nat,
    select::{self, flow_backend, flow_hash, source_allowed},
};

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

/// Whether a packet to `daddr` can be any of `classify`'s business: the
/// first check of every packet, so that traffic to no frontend costs one
/// lookup. A new flow is addressed to a frontend; a packet of a live flow
/// either to its frontend (the forward direction) or, as the reply of a
/// SNATed flow, to this node's address. The one other kind of entry, a
/// local backend's reply to an external client, is rewritten on the
/// uplink's egress, which does not ask this.
#[inline(always)]
pub fn may_be_ours(daddr: u32) -> bool {
    CONFIG
        .get(0)
        .is_some_and(|config| config.node_address == daddr)
        // SAFETY: only checked for presence.
        || unsafe { FRONTEND_ADDRESSES.get(&daddr) }.is_some()
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
    let Some(service) = select::service(key.daddr, key.dport, key.protocol) else {
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
    let Some(backend_id) = flow_backend(&service, key, hash, config.maglev_size) else {
        return Verdict::Drop(drop_reason::NO_BACKEND);
    };
    let Some(backend) = select::backend(backend_id) else {
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
    // The node's own address (a listener on the node, as the Ingress
    // proxies behind `skiff-ingress` are) is delivered locally: the FIB
    // does not forward to it, yet it is no remote backend either.
    let on_this_node =
        backend.address == config.node_address || is_local(ctx, ifindex, backend.address);
    let (forward, reply_key, reply) = if from_uplink && on_this_node {
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
            nat::snat_port(key, node, backend.address, backend.port, hash, now)
        else {
            return Verdict::Drop(drop_reason::NO_SNAT_PORT);
        };
        (
            entry(node, backend.address, snat_port, backend.port, CT_REDIRECT),
            reply_key,
            entry(key.daddr, key.saddr, key.dport, key.sport, CT_REDIRECT),
        )
    };
    if !conntrack::create(key, &forward, &reply_key, &reply) {
        return Verdict::NotOurs;
    }
    count_frontend(service.id, |stats| stats.connects += 1);
    Verdict::Apply(forward)
}
