//! The XDP fast path of the uplink's ingress NAT: the same decisions as the
//! TCX program (`flow::classify`), taken before the kernel allocates an skb.
//!
//! It finishes what it can alone: a packet for a local backend is rewritten
//! and passed up (the stack routes it to the pod), and unwanted packets
//! (outside the source ranges, no local endpoint) are dropped before the
//! kernel spends anything on them. Everything else passes untouched to the
//! TCX program, which finds the same conntrack entries: packets to send
//! back out (to a remote backend, or a remote backend's reply to its
//! client), ICMP errors to send, IP options, fragments.
//!
//! Why not XDP_TX the remote cases too: on the veth uplinks of the local
//! cluster, in native mode, a share of the transmitted frames never made
//! it (SYNs lost, SYN-ACKs reaching the client mangled), while generic mode
//! worked; until that is understood, the one transmit path is TCX's
//! `bpf_redirect_neigh`, which is correct in every mode.
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
    flow::{Verdict, classify, may_be_ours},
    nat::rewrite_xdp,
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
            apply(&packet, &entry, now, len)
        }
        Verdict::Drop(reason) => {
            count_drop(reason);
            XDP_DROP
        }
        Verdict::NotOurs | Verdict::Reject(_) => XDP_PASS,
    }
}

#[inline(always)]
fn apply(packet: &XdpPacket, entry: &CtValue, now: u64, len: u64) -> u32 {
    // The rest is counted by the TCX program, which handles it.
    if entry.action == CT_PASS {
        touch(&packet.key, entry, now, packet.tcp_closing, len);
        rewrite_xdp(packet, entry);
    }
    XDP_PASS
}
