//! The XDP fast path of the uplink's ingress NAT: the same decisions as the
//! TCX program (`flow`), taken before the kernel allocates an skb.
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
use core::mem::size_of;

use aya_ebpf::{
    EbpfContext,
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    helpers::bpf_ktime_get_ns,
    macros::xdp,
    programs::XdpContext,
};
use proxy_common::{CT_PASS, CtKey, CtValue, PROTO_TCP, PROTO_UDP};

use crate::{
    flow::{Verdict, classify, touch},
    shared::count_drop,
    tc_nat::{ETH_HLEN, IP_FRAGMENTED, TCP_FIN, TCP_RST},
};

const ETH_P_IP: u16 = 0x0800;
const IP_HLEN: usize = 20;
const L4: usize = ETH_HLEN + IP_HLEN;

/// The packet's headers, with pointers into the packet for the fields NAT
/// rewrites. Only IPv4 headers without options are handled here.
struct Packet {
    key: CtKey,
    ip: *mut [u8; IP_HLEN],
    ports: *mut [u16; 2],
    /// Where the L4 checksum is; null for UDP sent without one.
    l4_csum: *mut u16,
    tcp_closing: bool,
}

#[xdp]
pub fn skiff_xdp_ingress(ctx: XdpContext) -> u32 {
    let Some(packet) = parse(&ctx) else {
        return XDP_PASS;
    };
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

/// A pointer to a `T` at `offset` in the packet, if the packet holds one.
#[inline(always)]
fn at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut T)
}

#[inline(always)]
fn parse(ctx: &XdpContext) -> Option<Packet> {
    let ethertype: *mut u16 = at(ctx, 12)?;
    // SAFETY: every pointer `at` returns is inside the packet.
    if u16::from_be(unsafe { *ethertype }) != ETH_P_IP {
        return None;
    }
    let ip: *mut [u8; IP_HLEN] = at(ctx, ETH_HLEN)?;
    // SAFETY: as above.
    let header = unsafe { &*ip };
    if header[0] != 0x45 || u16::from_be_bytes([header[6], header[7]]) & IP_FRAGMENTED != 0 {
        return None;
    }
    let protocol = header[9];
    let ports: *mut [u16; 2] = at(ctx, L4)?;
    let (l4_csum, tcp_closing) = match protocol {
        PROTO_TCP => {
            let flags: *mut u8 = at(ctx, L4 + 13)?;
            let csum: *mut u16 = at(ctx, L4 + 16)?;
            // SAFETY: as above.
            (csum, unsafe { *flags } & (TCP_FIN | TCP_RST) != 0)
        }
        PROTO_UDP => {
            let csum: *mut u16 = at(ctx, L4 + 6)?;
            // SAFETY: as above.
            let csum = if unsafe { *csum } == 0 {
                core::ptr::null_mut()
            } else {
                csum
            };
            (csum, false)
        }
        _ => return None,
    };
    // SAFETY: as above.
    let [sport, dport] = unsafe { *ports };
    Some(Packet {
        key: CtKey {
            saddr: u32::from_ne_bytes([header[12], header[13], header[14], header[15]]),
            daddr: u32::from_ne_bytes([header[16], header[17], header[18], header[19]]),
            sport,
            dport,
            protocol,
            pad: [0; 3],
        },
        ip,
        ports,
        l4_csum,
        tcp_closing,
    })
}

#[inline(always)]
fn apply(packet: &Packet, entry: &CtValue, now: u64, len: u64) -> u32 {
    // The rest is counted by the TCX program, which handles it.
    if entry.action == CT_PASS {
        touch(&packet.key, entry, now, packet.tcp_closing, len);
        rewrite(packet, entry);
    }
    XDP_PASS
}

/// Rewrites addresses and ports, updating the IP and L4 checksums
/// incrementally (RFC 1624).
#[inline(always)]
fn rewrite(packet: &Packet, entry: &CtValue) {
    let key = &packet.key;
    // SAFETY: the pointers were bounds-checked by `parse`, and nothing has
    // moved the packet's data since.
    unsafe {
        let header = &mut *packet.ip;
        let mut ip_csum = u16::from_ne_bytes([header[10], header[11]]);
        let mut l4_csum = if packet.l4_csum.is_null() {
            0
        } else {
            *packet.l4_csum
        };
        for (old, new) in [(key.saddr, entry.saddr), (key.daddr, entry.daddr)] {
            ip_csum = replace32(ip_csum, old, new);
            l4_csum = replace32(l4_csum, old, new);
        }
        header[10..12].copy_from_slice(&ip_csum.to_ne_bytes());
        header[12..16].copy_from_slice(&entry.saddr.to_ne_bytes());
        header[16..20].copy_from_slice(&entry.daddr.to_ne_bytes());
        l4_csum = replace16(l4_csum, key.sport, entry.sport);
        l4_csum = replace16(l4_csum, key.dport, entry.dport);
        *packet.ports = [entry.sport, entry.dport];
        if !packet.l4_csum.is_null() {
            // In UDP an all-zero checksum means "none": its one's
            // complement twin stands in for it.
            if key.protocol == PROTO_UDP && l4_csum == 0 {
                l4_csum = 0xffff;
            }
            *packet.l4_csum = l4_csum;
        }
    }
}

/// The checksum `check` after a 32-bit field changed from `old` to `new`,
/// all as they sit in memory (the one's complement sum is byte order
/// independent).
#[inline(always)]
fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let check = replace16(check, old as u16, new as u16);
    replace16(check, (old >> 16) as u16, (new >> 16) as u16)
}

/// RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m').
#[inline(always)]
fn replace16(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
