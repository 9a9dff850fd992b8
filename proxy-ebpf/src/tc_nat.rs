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
//! IPv4 fragments other than the first, and anything not TCP or UDP over
//! IPv4, pass untouched: a NodePort flow's packets carry no fragments in the
//! local cluster (MTU 1500 end to end), and the stack handles the rest.
//! IP options are skipped over (the header length is read, not assumed).
use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT},
    helpers::{bpf_ktime_get_ns, bpf_redirect_neigh},
    macros::classifier,
    programs::TcContext,
};
use proxy_common::{CT_PASS, CT_REDIRECT, CtKey, CtValue, PROTO_TCP, PROTO_UDP, drop_reason};

use crate::{
    flow::{Verdict, classify, egress_ifindex, live_entry, touch},
    maps::CONFIG,
    reject,
    shared::{count_drop, count_frontend},
};

pub const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IP_FRAG_OFF: usize = ETH_HLEN + 6;
const IP_PROTO_OFF: usize = ETH_HLEN + 9;
const IP_CSUM_OFF: usize = ETH_HLEN + 10;
const IP_SRC_OFF: usize = ETH_HLEN + 12;
const IP_DST_OFF: usize = ETH_HLEN + 16;
/// More-fragments flag and fragment offset.
pub const IP_FRAGMENTED: u16 = 0x3fff;
pub const TCP_FIN: u8 = 0x01;
pub const TCP_RST: u8 = 0x04;

/// The headers of one TCP or UDP over IPv4 packet that NAT touches.
pub struct Packet {
    pub key: CtKey,
    /// Offset of the IP header's end: where the L4 header starts.
    pub l4: usize,
    l4_csum: usize,
    /// UDP without a checksum: there is none to update.
    no_l4_csum: bool,
    pub tcp_closing: bool,
}

#[classifier]
pub fn skiff_tc_ingress(ctx: TcContext) -> i32 {
    let Some(packet) = parse(&ctx) else {
        return TC_ACT_OK;
    };
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
    let Some(packet) = parse(&ctx) else {
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

#[inline(always)]
fn parse(ctx: &TcContext) -> Option<Packet> {
    let ethertype: u16 = ctx.load(12).ok()?;
    if u16::from_be(ethertype) != ETH_P_IP {
        return None;
    }
    let version_ihl: u8 = ctx.load(ETH_HLEN).ok()?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < 20 {
        return None;
    }
    let fragment: u16 = ctx.load(IP_FRAG_OFF).ok()?;
    if u16::from_be(fragment) & IP_FRAGMENTED != 0 {
        return None;
    }
    let protocol: u8 = ctx.load(IP_PROTO_OFF).ok()?;
    let l4 = ETH_HLEN + header_len;
    let (l4_csum, no_l4_csum, tcp_closing) = match protocol {
        PROTO_TCP => {
            let flags: u8 = ctx.load(l4 + 13).ok()?;
            (l4 + 16, false, flags & (TCP_FIN | TCP_RST) != 0)
        }
        PROTO_UDP => {
            let checksum: u16 = ctx.load(l4 + 6).ok()?;
            (l4 + 6, checksum == 0, false)
        }
        _ => return None,
    };
    Some(Packet {
        key: CtKey {
            saddr: ctx.load(IP_SRC_OFF).ok()?,
            daddr: ctx.load(IP_DST_OFF).ok()?,
            sport: ctx.load(l4).ok()?,
            dport: ctx.load(l4 + 2).ok()?,
            protocol,
            pad: [0; 3],
        },
        l4,
        l4_csum,
        no_l4_csum,
        tcp_closing,
    })
}

/// Rewrites the packet as `entry` says, then passes or redirects it.
#[inline(always)]
fn apply(ctx: &TcContext, packet: &Packet, entry: CtValue, now: u64) -> i32 {
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
    if rewrite(ctx, packet, &entry).is_err() {
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

#[inline(always)]
fn rewrite(ctx: &TcContext, packet: &Packet, entry: &CtValue) -> Result<(), i64> {
    let key = &packet.key;
    let l4_flags = if key.protocol == PROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    for (offset, old, new) in [
        (IP_SRC_OFF, key.saddr, entry.saddr),
        (IP_DST_OFF, key.daddr, entry.daddr),
    ] {
        if old == new {
            continue;
        }
        if !packet.no_l4_csum {
            ctx.l4_csum_replace(
                packet.l4_csum,
                u64::from(old),
                u64::from(new),
                u64::from(BPF_F_PSEUDO_HDR) | l4_flags | 4,
            )?;
        }
        ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(old), u64::from(new), 4)?;
        ctx.store(offset, &new, 0)?;
    }
    for (offset, old, new) in [
        (packet.l4, key.sport, entry.sport),
        (packet.l4 + 2, key.dport, entry.dport),
    ] {
        if old == new {
            continue;
        }
        if !packet.no_l4_csum {
            ctx.l4_csum_replace(packet.l4_csum, u64::from(old), u64::from(new), l4_flags | 2)?;
        }
        ctx.store(offset, &new, 0)?;
    }
    Ok(())
}
