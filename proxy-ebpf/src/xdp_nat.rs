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
use proxy_common::{CT_PASS, CT_REDIRECT, CtValue};

use crate::{
    conntrack::touch,
    counters::count_drop,
    fib::next_hop,
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
    if entry.action == CT_REDIRECT {
        return send_back(ctx, ifindex, packet, entry, now, len);
    }
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
    let Some(hop) = next_hop(ctx.as_ptr(), ifindex, entry.saddr, entry.daddr) else {
        return XDP_PASS;
    };
    if !forward_xdp(packet, hop.source, hop.destination) {
        return XDP_PASS;
    }
    // Misses only if the pod's veth went away since the lookup above; the
    // frame then had nowhere to go anyway.
    POD_PORTS
        .redirect(entry.daddr, u64::from(XDP_PASS))
        .unwrap_or(XDP_PASS)
}

/// Sends a packet of a flow through a remote backend back out of the
/// uplink, rewritten as the TCX program would (`tc_nat::apply`), when the
/// FIB routes its new destination out of the uplink it came in on, to a
/// resolved neighbour. Anything else passes untouched to TCX: decided
/// before anything is rewritten.
#[inline(always)]
fn send_back(
    ctx: &XdpContext,
    ifindex: u32,
    packet: &XdpPacket,
    entry: &CtValue,
    now: u64,
    len: u64,
) -> u32 {
    let Some(hop) = next_hop(ctx.as_ptr(), ifindex, entry.saddr, entry.daddr) else {
        return XDP_PASS;
    };
    if hop.ifindex != ifindex || !forward_xdp(packet, hop.source, hop.destination) {
        return XDP_PASS;
    }
    touch(&packet.key, entry, now, packet.tcp_closing, len);
    rewrite_xdp(packet, entry);
    XDP_TX
}
