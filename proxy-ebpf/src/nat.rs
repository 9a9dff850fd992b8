//! Address and port translation: the SNAT port of a flow to a remote
//! backend, and the rewriting of a packet's addresses and ports with its
//! checksums, in an skb (through the kernel's checksum helpers) or in an
//! XDP frame (incrementally, by hand).
use aya_ebpf::{bindings::BPF_F_MARK_MANGLED_0, programs::TcContext};
use proxy_common::{CtKeyOf, CtValueOf, PROTO_UDP};

use crate::{
    conntrack::live_entry,
    family::PacketAddress,
    header::replace16,
    packet::{TcPacket, XdpPacket},
};

/// SNAT ports for flows to remote backends: the range Linux leaves to
/// ephemeral ports by default, tried at a few hashed places.
const SNAT_PORT_FIRST: u32 = 32_768;
const SNAT_PORT_COUNT: u32 = 28_232;
const SNAT_ATTEMPTS: u32 = 4;

/// A source port on this node's address `node` for a flow to a remote backend,
/// and the key its replies will carry; `None` if the hashed candidates are
/// all taken by live flows.
#[inline(always)]
pub fn snat_port<A: PacketAddress>(
    key: &CtKeyOf<A>,
    node: A,
    backend_address: A,
    backend_port: u16,
    hash: u32,
    now: u64,
) -> Option<(u16, CtKeyOf<A>)> {
    for attempt in 0..SNAT_ATTEMPTS {
        let port = SNAT_PORT_FIRST
            + (hash >> 8).wrapping_add(attempt.wrapping_mul(7919)) % SNAT_PORT_COUNT;
        let port = (port as u16).to_be();
        let reply_key = CtKeyOf {
            saddr: backend_address,
            daddr: node,
            sport: backend_port,
            dport: port,
            protocol: key.protocol,
            pad: [0; 3],
        };
        if live_entry(&reply_key, now).is_none() {
            return Some((port, reply_key));
        }
    }
    None
}

/// Rewrites an skb's addresses and ports to `entry`'s, updating the
/// checksums that cover them through the helpers.
#[inline(always)]
pub fn rewrite_tc<A: PacketAddress>(
    ctx: &TcContext,
    packet: &TcPacket<A>,
    entry: &CtValueOf<A>,
) -> Result<(), i64> {
    let key = &packet.key;
    let l4_flags = if key.protocol == PROTO_UDP {
        u64::from(BPF_F_MARK_MANGLED_0)
    } else {
        0
    };
    for (offset, old, new) in [
        (A::SRC_OFF, &key.saddr, &entry.saddr),
        (A::DST_OFF, &key.daddr, &entry.daddr),
    ] {
        if !old.same_as(new) {
            A::replace_tc(ctx, packet, offset, old, new, l4_flags)?;
        }
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

/// Rewrites an XDP frame's addresses and ports to `entry`'s, updating the
/// checksums that cover them incrementally (RFC 1624): the IPv4 header's,
/// and the L4 one through the pseudo-header.
#[inline(always)]
pub fn rewrite_xdp<A: PacketAddress>(packet: &XdpPacket<A>, entry: &CtValueOf<A>) {
    let key = &packet.key;
    // SAFETY: the pointers were bounds-checked by the parse, and nothing
    // has moved the packet's data since.
    unsafe {
        let mut l4_csum = if packet.l4_csum.is_null() {
            0
        } else {
            *packet.l4_csum
        };
        l4_csum = A::rewrite_xdp_addresses(&mut *packet.ip, key, entry, l4_csum);
        l4_csum = replace16(l4_csum, key.sport, entry.sport);
        l4_csum = replace16(l4_csum, key.dport, entry.dport);
        *packet.ports = [entry.sport, entry.dport];
        if !packet.l4_csum.is_null() {
            // In UDP an all-zero checksum means "none" (IPv4) or is
            // invalid (IPv6): its one's complement twin stands in for it.
            if key.protocol == PROTO_UDP && l4_csum == 0 {
                l4_csum = 0xffff;
            }
            *packet.l4_csum = l4_csum;
        }
    }
}

/// Does to an XDP frame what the stack's forwarding does before the frame
/// leaves on another device: one hop less to live, and the new link-layer
/// source and destination. `false` (the frame untouched) when the TTL or
/// hop limit has run out: the stack then answers the sender.
#[inline(always)]
pub fn forward_xdp<A: PacketAddress>(
    packet: &XdpPacket<A>,
    source: [u8; 6],
    destination: [u8; 6],
) -> bool {
    // SAFETY: as in `rewrite_xdp`.
    unsafe {
        if !A::decrement_hop_limit(&mut *packet.ip) {
            return false;
        }
        let eth = &mut *packet.eth;
        eth[0..6].copy_from_slice(&destination);
        eth[6..12].copy_from_slice(&source);
    }
    true
}
