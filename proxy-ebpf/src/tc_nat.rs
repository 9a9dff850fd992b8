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
//! IPv4 and IPv6 take one generic path (`family::PacketAddress`), each
//! family through its own maps. Packets the parse does not take
//! (fragments, IPv6 extension headers, anything but TCP or UDP) pass
//! untouched.
use aya_ebpf::{
    EbpfContext,
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_ktime_get_ns, bpf_redirect_neigh},
    macros::classifier,
    programs::TcContext,
};
use proxy_common::{CT_PASS, CT_REDIRECT, CtValueOf, Ipv6Words, drop_reason};

use crate::{
    conntrack::{live_entry, touch},
    counters::{count_drop, count_frontend},
    family::PacketAddress,
    fib::egress_ifindex,
    flow::{Verdict, classify, may_be_ours},
    maps::CONFIG,
    nat::rewrite_tc,
    packet::{ETH_P_IP, ETH_P_IPV6, Peeked, TcPacket, ethertype_tc, peek_tc},
};

#[classifier]
pub fn skiff_tc_ingress(ctx: TcContext) -> i32 {
    // Most IPv4 packets are decided from two direct reads and one lookup,
    // before the helper calls of the full parse.
    let (ethertype, checked) = match peek_tc(&ctx) {
        Peeked::Ipv4(daddr) if !may_be_ours(daddr) => return TC_ACT_OK,
        Peeked::Ipv4(_) => (ETH_P_IP, true),
        Peeked::Ipv6 => (ETH_P_IPV6, false),
        Peeked::Other => return TC_ACT_OK,
        Peeked::Unknown => match ethertype_tc(&ctx) {
            Some(ethertype) => (ethertype, false),
            None => return TC_ACT_OK,
        },
    };
    match ethertype {
        ETH_P_IP => answer::<u32>(&ctx, ingress::<u32>(&ctx, checked)),
        ETH_P_IPV6 => answer::<Ipv6Words>(&ctx, ingress::<Ipv6Words>(&ctx, false)),
        _ => TC_ACT_OK,
    }
}

/// What the ingress path decided.
enum Ingress {
    /// The program's return code.
    Done(i32),
    /// Answer with a port unreachable (already counted).
    Reject,
}

/// The return code for `outcome`. The ICMP answer is made here, after
/// `ingress` returned, so that its stack frame and the ingress path's are
/// never on one call chain.
#[inline(always)]
fn answer<A: PacketAddress>(ctx: &TcContext, outcome: Ingress) -> i32 {
    match outcome {
        Ingress::Done(code) => code,
        Ingress::Reject => A::port_unreachable(ctx),
    }
}

/// The ingress path of a packet of family `A`; `checked`: its destination
/// was already found to be possibly ours. Not inlined: each family's path
/// gets a stack frame of its own, rather than one frame holding both (the
/// verifier allows 512 bytes per call chain, the ICMP answer's frame
/// included).
#[inline(never)]
fn ingress<A: PacketAddress>(ctx: &TcContext, checked: bool) -> Ingress {
    let Some(packet) = A::parse_tc(ctx) else {
        return Ingress::Done(TC_ACT_OK);
    };
    let packet = &packet;
    if !checked && !may_be_ours(packet.key.daddr) {
        return Ingress::Done(TC_ACT_OK);
    }
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    Ingress::Done(
        match classify(ctx.as_ptr(), ifindex(ctx), &packet.key, now) {
            Verdict::NotOurs => TC_ACT_OK,
            // A local pod's reply to an external client, seen on a pod
            // interface: rewritten here, its new source (this node) would be a
            // martian to the routing that follows; the uplink's egress program
            // rewrites it after routing.
            Verdict::Apply(entry) if entry.action == CT_PASS && !on_uplink(ctx) => TC_ACT_OK,
            Verdict::Apply(entry) => apply(ctx, packet, &entry, now),
            Verdict::Drop(reason) => {
                count_drop(reason);
                TC_ACT_SHOT
            }
            Verdict::Reject(service_id) => {
                count_drop(drop_reason::NO_ENDPOINTS);
                count_frontend(service_id, |stats| stats.refused += 1);
                return Ingress::Reject;
            }
        },
    )
}

/// Replies of pods on this node to external clients.
#[classifier]
pub fn skiff_tc_egress(ctx: TcContext) -> i32 {
    match ethertype_tc(&ctx) {
        Some(ETH_P_IP) => egress::<u32>(&ctx),
        Some(ETH_P_IPV6) => egress::<Ipv6Words>(&ctx),
        _ => TC_ACT_OK,
    }
}

/// Not inlined, as `ingress`.
#[inline(never)]
fn egress<A: PacketAddress>(ctx: &TcContext) -> i32 {
    let Some(packet) = A::parse_tc(ctx) else {
        return TC_ACT_OK;
    };
    let packet = &packet;
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    match live_entry(&packet.key, now) {
        Some(entry) if entry.action == CT_PASS => apply(ctx, packet, &entry, now),
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
fn apply<A: PacketAddress>(
    ctx: &TcContext,
    packet: &TcPacket<A>,
    entry: &CtValueOf<A>,
    now: u64,
) -> i32 {
    if entry.action != CT_PASS && entry.action != CT_REDIRECT {
        return TC_ACT_SHOT;
    }
    touch(
        &packet.key,
        entry,
        now,
        packet.tcp_closing,
        u64::from(ctx.len()),
    );
    if rewrite_tc(ctx, packet, entry).is_err() {
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
