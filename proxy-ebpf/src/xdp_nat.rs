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
//! back out (to a remote backend, or a remote backend's reply to its
//! client), ICMP errors to send, IP options, fragments, and all IPv6
//! (`parse_xdp` takes IPv4 only; TCX serves IPv6 through the same
//! generic `flow`).
//!
//! Why not XDP_TX the remote cases too: on a veth, XDP_TX puts the frame in
//! the peer's ring and schedules the peer's NAPI only when the peer runs an
//! XDP program itself (drivers/net/veth.c, `veth_xdp_flush`); the fabric
//! side of the local cluster's uplinks has GRO on (so NAPI and a ring) but
//! no program, so transmitted frames waited in the ring until some other
//! packet to that peer ran its NAPI: up to about a second late, or lost.
//! A redirect is flushed with `XDP_XMIT_FLUSH`, which schedules the peer's
//! NAPI whatever it runs, and needs only that the peer has one: the agent
//! turns GRO on in each pod for that. The one transmit path for remote
//! backends stays TCX's `bpf_redirect_neigh`.
use aya_ebpf::{
    EbpfContext,
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::bpf_ktime_get_ns,
    macros::xdp,
    programs::XdpContext,
};
use proxy_common::{CT_PASS, CtValue};

use crate::{
    conntrack::touch,
    counters::count_drop,
    fib::next_hop_macs,
    flow::{Verdict, classify, may_be_ours},
    maps::POD_PORTS,
    nat::{forward_xdp, rewrite_xdp},
    packet::{XdpPacket, parse_xdp},
};

#[xdp]
pub fn skiff_xdp_ingress(ctx: XdpContext) -> u32 {
    let Some(packet) = parse_xdp(&ctx) else {
        return XDP_PASS;
    };
    if !may_be_ours(packet.key.daddr) {
        return XDP_PASS;
    }
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let ifindex = ctx.ingress_ifindex() as u32;
    match classify(ctx.as_ptr(), ifindex, &packet.key, now) {
        Verdict::Apply(entry) => {
            let len = (ctx.data_end() - ctx.data()) as u64;
            apply(&ctx, ifindex, &packet, &entry, now, len)
        }
        Verdict::Drop(reason) => {
            count_drop(reason);
            XDP_DROP
        }
        Verdict::NotOurs | Verdict::Reject(_) => XDP_PASS,
    }
}

#[inline(always)]
fn apply(
    ctx: &XdpContext,
    ifindex: u32,
    packet: &XdpPacket,
    entry: &CtValue,
    now: u64,
    len: u64,
) -> u32 {
    // The rest is counted by the TCX program, which handles it.
    if entry.action != CT_PASS {
        return XDP_PASS;
    }
    touch(&packet.key, entry, now, packet.tcp_closing, len);
    rewrite_xdp(packet, entry);
    deliver(ctx, ifindex, packet, entry)
}

/// Sends a rewritten frame for a pod on this node into the pod's veth, or
/// passes it to the stack, which routes it there, when the pod's port, the
/// route or the pod's neighbour entry is not known yet.
#[inline(always)]
fn deliver(ctx: &XdpContext, ifindex: u32, packet: &XdpPacket, entry: &CtValue) -> u32 {
    // Looked up first: a frame with the pod's MAC addresses would be
    // dropped by the stack as addressed to another host.
    if POD_PORTS.get_ifindex(entry.daddr).is_none() {
        return XDP_PASS;
    }
    let Some((source, destination)) =
        next_hop_macs(ctx.as_ptr(), ifindex, entry.saddr, entry.daddr)
    else {
        return XDP_PASS;
    };
    if !forward_xdp(packet, source, destination) {
        return XDP_PASS;
    }
    // Misses only if the pod's veth went away since the lookup above; the
    // frame then had nowhere to go anyway.
    POD_PORTS
        .redirect(entry.daddr, u64::from(XDP_PASS))
        .unwrap_or(XDP_PASS)
}
