//! The XDP fast path of the uplink's ingress NAT: the same decisions as the
//! TCX program (`flow::classify`), taken before the kernel allocates an skb.
//!
//! It finishes what it can alone: a packet for a local backend is rewritten
//! and sent straight into the pod's veth (`skiff_pod_ports`, with the MAC
//! addresses and TTL the stack's forwarding would give it), or passed up
//! for the stack to route while the pod's port or its neighbour entry is
//! not known; unwanted packets
//! (outside the source ranges, no local endpoint) are dropped before the
//! kernel spends anything on them. Everything else passes untouched to the
//! TCX program, which finds the same conntrack entries: packets to send
//! back out that the FIB routes anywhere but back out of the uplink, ICMP
//! errors to send, IP options, fragments, IPv6 extension headers, and IPv6
//! UDP without a checksum (which the stack drops).
//!
//! IPv4 and IPv6 take one generic path (`family::PacketAddress`, as in
//! TCX), branched off by ethertype first: an IPv4 frame to no frontend
//! costs two direct reads and one lookup, an IPv6 one its parse and two
//! lookups (node address, frontend addresses). Each family's path is made
//! of subprograms (`ingress4`; `decide6`, then `deliver6`), so that the
//! IPv6 path's larger keys and entries fit the 512 bytes of stack a BPF
//! call chain may have and do not grow the IPv4 path's frame; both
//! families then apply an entry the same way (`apply`). The pod's
//! port comes from
//! `skiff_pod_ports` (IPv4, a device map) or `skiff_podports6` (IPv6, an
//! ifindex by address: a device map's keys are 4 bytes), and the
//! link-layer addresses from an `AF_INET` or `AF_INET6` FIB lookup; IPv6
//! has no header checksum to update, and its hop limit is taken down as
//! the TTL is.
//!
//! Packets to send back out (to a remote backend, or a remote backend's
//! reply to its client) are rewritten as the TCX program would and
//! transmitted back out of the uplink (XDP_TX) when the FIB says they leave
//! by the uplink they came in on, to a resolved neighbour; otherwise they
//! pass untouched and TCX sends them (`bpf_redirect_neigh`).
//!
//! On a veth, XDP_TX puts the frame in the peer's ring and schedules the
//! peer's NAPI only when the peer runs an XDP program itself
//! (drivers/net/veth.c, `veth_xdp_flush`): the local cluster attaches a
//! pass-only one (`skiff-xdp-pass`) to the fabric side of each uplink.
//! A redirect is flushed with `XDP_XMIT_FLUSH`, which schedules the peer's
//! NAPI whatever it runs, and needs only that the peer has one: the agent
//! turns GRO on in each pod for that.
//!
//! Every checksum update here is incremental, so frames must arrive with
//! complete checksums (as from a NIC): a partial one (`CHECKSUM_PARTIAL`
//! from a veth peer with transmit offload on) would come out wrong.
use aya_ebpf::{
    EbpfContext,
    bindings::xdp_action::{XDP_DROP, XDP_PASS, XDP_TX},
    helpers::bpf_ktime_get_ns,
    macros::xdp,
    programs::XdpContext,
};
use proxy_common::{CT_PASS, CT_REDIRECT, CtKeyOf, CtValueOf, Ipv6Words};

use crate::{
    conntrack::{live_entry, touch},
    counters::count_drop,
    family::PacketAddress,
    fib::next_hop,
    flow::{Verdict, classify, may_be_ours},
    nat::{forward_xdp, rewrite_xdp},
    packet::{Peeked, XdpPacket, peek_xdp},
};

#[xdp]
pub fn skiff_xdp_ingress(ctx: XdpContext) -> u32 {
    // Most IPv4 frames are decided from two direct reads and one lookup,
    // as in TCX, without the rest of the parse.
    match peek_xdp(&ctx) {
        Peeked::Ipv4(daddr) if may_be_ours(daddr) => ingress4(&ctx),
        Peeked::Ipv6 => ingress6(&ctx),
        Peeked::Ipv4(_) | Peeked::Other | Peeked::Unknown => XDP_PASS,
    }
}

/// The IPv4 path of a frame that may be ours: a subprogram of its own, so
/// that the entry's stack frame stays small for the IPv6 path's calls.
#[inline(never)]
fn ingress4(ctx: &XdpContext) -> u32 {
    let Some(packet) = u32::parse_xdp(ctx) else {
        return XDP_PASS;
    };
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    match decide(ctx, &packet.key, now) {
        Ok(entry) => apply(ctx, &packet, &entry, now),
        Err(action) => action,
    }
}

/// The IPv6 path: its decision and its delivery (or send-back) are two
/// subprograms called one after the other, as together (keys and entries
/// of 40 and 56 bytes, the balancing of a new flow, a FIB lookup) they
/// would pass the 512 bytes of stack a BPF call chain may have. The
/// delivery parses the frame again and reads the flow's entry back from
/// conntrack (where the decision found or wrote it): no entry crosses from
/// one frame to the other. Kept inline, so that the entry's frame stays
/// small.
#[inline(always)]
fn ingress6(ctx: &XdpContext) -> u32 {
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    match decide6(ctx, now) {
        Ok(()) => deliver6(ctx, now),
        Err(action) => action,
    }
}

#[inline(never)]
fn decide6(ctx: &XdpContext, now: u64) -> Result<(), u32> {
    let Some(packet) = Ipv6Words::parse_xdp(ctx) else {
        return Err(XDP_PASS);
    };
    if !may_be_ours(packet.key.daddr) {
        return Err(XDP_PASS);
    }
    decide(ctx, &packet.key, now).map(|_| ())
}

#[inline(never)]
fn deliver6(ctx: &XdpContext, now: u64) -> u32 {
    let Some(packet) = Ipv6Words::parse_xdp(ctx) else {
        return XDP_PASS;
    };
    // Gone only if it expired or was evicted since: TCX balances it again.
    let Some(entry) = live_entry(&packet.key, now) else {
        return XDP_PASS;
    };
    apply(ctx, &packet, &entry, now)
}

/// Classifies a frame of family `A` with this `key`: the entry to apply,
/// or the action to return at once. (The frame itself is not moved
/// through the result: the verifier refuses the pointers in it copied
/// four bytes at a time.)
#[inline(always)]
fn decide<A: PacketAddress>(
    ctx: &XdpContext,
    key: &CtKeyOf<A>,
    now: u64,
) -> Result<CtValueOf<A>, u32> {
    let ifindex = ctx.ingress_ifindex() as u32;
    match classify(ctx.as_ptr(), ifindex, key, now) {
        Verdict::Apply(entry) => Ok(entry),
        Verdict::Drop(reason) => {
            count_drop(reason);
            Err(XDP_DROP)
        }
        Verdict::NotOurs | Verdict::Reject(_) => Err(XDP_PASS),
    }
}

/// Applies a flow's entry to its frame, as TCX would: a packet for a local
/// backend is delivered into the pod, one to or from a remote backend sent
/// back out of the uplink.
#[inline(always)]
fn apply<A: PacketAddress>(
    ctx: &XdpContext,
    packet: &XdpPacket<A>,
    entry: &CtValueOf<A>,
    now: u64,
) -> u32 {
    match entry.action {
        CT_PASS => {
            let len = (ctx.data_end() - ctx.data()) as u64;
            touch(&packet.key, entry, now, packet.tcp_closing, len);
            rewrite_xdp(packet, entry);
            deliver(ctx, packet, entry)
        }
        CT_REDIRECT => send_back(ctx, packet, entry, now),
        // The rest is counted by the TCX program, which handles it.
        _ => XDP_PASS,
    }
}

/// Sends a rewritten frame for a pod on this node into the pod's veth, or
/// passes it to the stack, which routes it there, when the pod's port, the
/// route or the pod's neighbour entry is not known yet.
#[inline(always)]
fn deliver<A: PacketAddress>(ctx: &XdpContext, packet: &XdpPacket<A>, entry: &CtValueOf<A>) -> u32 {
    // Looked up first: a frame with the pod's MAC addresses would be
    // dropped by the stack as addressed to another host.
    let Some(port) = entry.daddr.pod_port() else {
        return XDP_PASS;
    };
    let ifindex = ctx.ingress_ifindex() as u32;
    let Some(hop) = next_hop(ctx.as_ptr(), ifindex, entry.saddr, entry.daddr) else {
        return XDP_PASS;
    };
    if !forward_xdp(packet, hop.source, hop.destination) {
        return XDP_PASS;
    }
    // Misses only if the pod's veth went away since the lookup above; the
    // frame then had nowhere to go anyway.
    entry.daddr.redirect_to_pod(port)
}

/// Sends a packet of a flow through a remote backend back out of the
/// uplink, rewritten as the TCX program would (`tc_nat::apply`), when the
/// FIB routes its new destination out of the uplink it came in on, to a
/// resolved neighbour. Anything else passes untouched to TCX: decided
/// before anything is rewritten.
#[inline(always)]
fn send_back<A: PacketAddress>(
    ctx: &XdpContext,
    packet: &XdpPacket<A>,
    entry: &CtValueOf<A>,
    now: u64,
) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    let Some(hop) = next_hop(ctx.as_ptr(), ifindex, entry.saddr, entry.daddr) else {
        return XDP_PASS;
    };
    if hop.ifindex != ifindex || !forward_xdp(packet, hop.source, hop.destination) {
        return XDP_PASS;
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    touch(&packet.key, entry, now, packet.tcp_closing, len);
    rewrite_xdp(packet, entry);
    XDP_TX
}
