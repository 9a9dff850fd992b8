//! Per-packet NAT on the node's uplink (TCX ingress and egress) for traffic
//! that comes from outside the node to an external frontend: a NodePort, a
//! load balancer ingress IP or an external IP (and a ClusterIP routed to
//! the node). The XDP program takes the common cases first when attached;
//! this path serves everything it passes on, and the replies of local pods.
//!
//! The ingress program also runs on the node's pod interfaces
//! (`--pod-interface`), for pod traffic the socket hooks did not see (a
//! process outside the node's cgroup subtree): the same conntrack and
//! balancing, with remote backends reached through the uplink.
//!
//! Packets `packet::parse_tc` does not parse (fragments, anything but TCP or
//! UDP over IPv4) pass untouched.
use aya_ebpf::{
    EbpfContext,
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_ktime_get_ns, bpf_redirect_neigh},
    macros::classifier,
    programs::TcContext,
};
use proxy_common::{CT_PASS, CT_REDIRECT, CtValue, drop_reason};

use crate::{
    conntrack::{live_entry, touch},
    counters::{count_drop, count_frontend},
    fib::egress_ifindex,
    flow::{Verdict, classify, may_be_ours},
    maps::CONFIG,
    nat::rewrite_tc,
    packet::{TcPacket, parse_tc, peek_destination_tc},
    reject,
};

#[classifier]
pub fn skiff_tc_ingress(ctx: TcContext) -> i32 {
    // Most packets are decided from two direct reads and one lookup, before
    // the helper calls of the full parse.
    let peeked = peek_destination_tc(&ctx);
    if peeked.is_some_and(|destination| !destination.is_some_and(may_be_ours)) {
        return TC_ACT_OK;
    }
    let Some(packet) = parse_tc(&ctx) else {
        return TC_ACT_OK;
    };
    if peeked.is_none() && !may_be_ours(packet.key.daddr) {
        return TC_ACT_OK;
    }
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    match classify(ctx.as_ptr(), ifindex(&ctx), &packet.key, now) {
        Verdict::NotOurs => TC_ACT_OK,
        // A local pod's reply to an external client, seen on a pod
        // interface: rewritten here, its new source (this node) would be a
        // martian to the routing that follows; the uplink's egress program
        // rewrites it after routing.
        Verdict::Apply(entry) if entry.action == CT_PASS && !on_uplink(&ctx) => TC_ACT_OK,
        Verdict::Apply(entry) => apply(&ctx, &packet, entry, now),
        Verdict::Drop(reason) => {
            count_drop(reason);
            TC_ACT_SHOT
        }
        Verdict::Reject(service_id) => {
            count_drop(drop_reason::NO_ENDPOINTS);
            count_frontend(service_id, |stats| stats.refused += 1);
            reject::port_unreachable(&ctx, &packet)
        }
    }
}

/// Replies of pods on this node to external clients.
#[classifier]
pub fn skiff_tc_egress(ctx: TcContext) -> i32 {
    let Some(packet) = parse_tc(&ctx) else {
        return TC_ACT_OK;
    };
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    match live_entry(&packet.key, now) {
        Some(entry) if entry.action == CT_PASS => apply(&ctx, &packet, entry, now),
        _ => TC_ACT_OK,
    }
}

#[inline(always)]
fn on_uplink(ctx: &TcContext) -> bool {
    let uplink = CONFIG.get(0).map_or(0, |config| config.uplink_ifindex);
    uplink == 0 || ifindex(ctx) == uplink
}

#[inline(always)]
fn ifindex(ctx: &TcContext) -> u32 {
    // SAFETY: the context's skb is valid for the program's run.
    unsafe { (*ctx.skb.skb).ifindex }
}

/// Rewrites the packet as `entry` says, then passes or redirects it.
#[inline(always)]
fn apply(ctx: &TcContext, packet: &TcPacket, entry: CtValue, now: u64) -> i32 {
    if entry.action != CT_PASS && entry.action != CT_REDIRECT {
        return TC_ACT_SHOT;
    }
    touch(
        &packet.key,
        &entry,
        now,
        packet.tcp_closing,
        u64::from(ctx.len()),
    );
    if rewrite_tc(ctx, packet, &entry).is_err() {
        return TC_ACT_SHOT;
    }
    if entry.action == CT_REDIRECT {
        // Out where the new destination is routed: back out of the uplink,
        // or, for a pod client behind the pod interface, to the pod.
        let Some(out) = egress_ifindex(ctx.as_ptr(), ifindex(ctx), entry.saddr, entry.daddr) else {
            return TC_ACT_SHOT;
        };
        // SAFETY: no neighbour parameters: the kernel resolves the next hop
        // for the packet's new destination itself.
        return unsafe { bpf_redirect_neigh(out, core::ptr::null_mut(), 0, 0) } as i32;
    }
    TC_ACT_OK
}
