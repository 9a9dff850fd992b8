//! What the per-packet path needs of an address family, so that `flow`,
//! `conntrack`, `nat` and `fib` are one generic code for IPv4 and IPv6 (as
//! `select::Family` is for the frontend and backend maps): the family's
//! conntrack and frontend-address maps, this node's address, where the
//! addresses sit in a frame and how rewriting one updates the checksums
//! (in an skb or an XDP frame), the FIB request, and how XDP reaches a
//! local pod's veth.
//!
//! The family is named by its address type (`u32` or `Ipv6Words`), so the
//! callers' types pick it: a `CtKeyOf<u32>` is balanced through the IPv4
//! maps, a `CtKeyOf<Ipv6Words>` through the IPv6 ones.
use aya_ebpf::{
    bindings::{BPF_F_PSEUDO_HDR, bpf_fib_lookup, xdp_action::XDP_PASS},
    helpers::bpf_redirect,
    maps::LruHashMap,
    programs::{TcContext, XdpContext},
};
use proxy_common::{AFFINITY_CLIENT_ADDRESS, CtKeyOf, CtValueOf, Ipv6Words, ServiceValue};

use crate::{
    header::{decrement_hop_limit6, decrement_ttl, rewrite_addresses4, rewrite_addresses6},
    maps::{
        CONFIG, CONNTRACK, CONNTRACK6, FRONTEND_ADDRESSES, FRONTEND_ADDRESSES6, NODE_ADDRESS6,
        POD_PORTS, POD_PORTS6,
    },
    packet::{
        IP_CSUM_OFF, IP_DST_OFF, IP_HLEN, IP_SRC_OFF, IP6_DST_OFF, IP6_HLEN, IP6_SRC_OFF, TcPacket,
        XdpHeader, XdpPacket, parse_tc4, parse_tc6, parse_xdp4, parse_xdp6,
    },
    reject,
    select::{Family, V4, V6, source_allowed, source_allowed6},
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// An address family of the per-packet path, named by its address type.
pub trait PacketAddress: XdpHeader + Copy + 'static {
    /// The family's frontend and backend maps.
    type Family: Family<Address = Self>;
    /// Where a frame's source and destination addresses are.
    const SRC_OFF: usize;
    const DST_OFF: usize;
    /// The all-zero address: no address.
    const UNSPECIFIED: Self;

    /// Parses an skb of this family (its ethertype checked by the caller).
    fn parse_tc(ctx: &TcContext) -> Option<TcPacket<Self>>;
    /// Whether two addresses are equal, compared word by word (an array
    /// comparison would be a `memcmp` call, which BPF has not).
    fn same_as(&self, other: &Self) -> bool;
    /// The family's conntrack map.
    fn conntrack() -> &'static LruHashMap<CtKeyOf<Self>, CtValueOf<Self>>;
    /// Whether some frontend has this address (the family's
    /// frontend-address map).
    fn is_frontend_address(&self) -> bool;
    /// Whether this is this node's address.
    fn is_node_address(&self) -> bool;
    /// This node's address of this family: the source of flows SNATed to
    /// remote backends. `None`: only local backends are reachable.
    fn node_address() -> Option<Self>;
    /// The address folded into 32 bits, for the flow hash.
    fn folded(&self) -> u32;
    /// Whether this source may open flows to a frontend flagged
    /// `SERVICE_FLAG_SOURCE_RANGES`.
    fn source_allowed(&self, service: &ServiceValue) -> bool;
    /// The per-packet affinity client of a source address.
    fn affinity_client(&self) -> u64;
    /// Parses an XDP frame of this family (its ethertype checked by the
    /// caller).
    fn parse_xdp(ctx: &XdpContext) -> Option<XdpPacket<Self>>;
    /// Writes `entry`'s addresses over `key`'s in an XDP frame's IP header
    /// (with its checksum, if it has one) and returns the L4 checksum
    /// updated for them.
    fn rewrite_xdp_addresses(
        header: &mut Self::Header,
        key: &CtKeyOf<Self>,
        entry: &CtValueOf<Self>,
        l4_csum: u16,
    ) -> u16;
    /// Takes one hop off an XDP frame's IP header; `false` (untouched) when
    /// none is left.
    fn decrement_hop_limit(header: &mut Self::Header) -> bool;
    /// The node side of the veth of the pod on this node with this
    /// address, if the agent mapped one (`skiff_pod_ports`,
    /// `skiff_podports6`).
    fn pod_port(&self) -> Option<u32>;
    /// Redirects the running XDP program's frame into `port`, the pod port
    /// of this address (`XDP_PASS` if it went away meanwhile).
    fn redirect_to_pod(&self, port: u32) -> u32;
    /// Fills in the family and the addresses of a FIB lookup.
    fn fib_request(params: &mut bpf_fib_lookup, saddr: &Self, daddr: &Self);
    /// Turns a packet for a frontend without endpoints into the family's
    /// port unreachable to its sender (`reject`).
    fn port_unreachable(ctx: &TcContext) -> i32;
    /// Writes `new` over the address `old` at `offset` in an skb, with the
    /// checksums that cover it (`l4_flags`: the L4 checksum helper's flags
    /// besides the pseudo-header one).
    fn replace_tc(
        ctx: &TcContext,
        packet: &TcPacket<Self>,
        offset: usize,
        old: &Self,
        new: &Self,
        l4_flags: u64,
    ) -> Result<(), i64>;
}

impl PacketAddress for u32 {
    type Family = V4;
    const SRC_OFF: usize = IP_SRC_OFF;
    const DST_OFF: usize = IP_DST_OFF;
    const UNSPECIFIED: u32 = 0;
    #[inline(always)]
    fn parse_xdp(ctx: &XdpContext) -> Option<XdpPacket<u32>> {
        parse_xdp4(ctx)
    }

    #[inline(always)]
    fn rewrite_xdp_addresses(
        header: &mut [u8; IP_HLEN],
        key: &CtKeyOf<u32>,
        entry: &CtValueOf<u32>,
        l4_csum: u16,
    ) -> u16 {
        rewrite_addresses4(header, key, entry, l4_csum)
    }

    #[inline(always)]
    fn decrement_hop_limit(header: &mut [u8; IP_HLEN]) -> bool {
        decrement_ttl(header)
    }

    #[inline(always)]
    fn pod_port(&self) -> Option<u32> {
        POD_PORTS.get_ifindex(*self)
    }

    /// Through the device map, which the kernel keeps to live devices and
    /// flushes in bulk.
    #[inline(always)]
    fn redirect_to_pod(&self, _port: u32) -> u32 {
        POD_PORTS
            .redirect(*self, u64::from(XDP_PASS))
            .unwrap_or(XDP_PASS)
    }

    #[inline(always)]
    fn parse_tc(ctx: &TcContext) -> Option<TcPacket<u32>> {
        parse_tc4(ctx)
    }

    #[inline(always)]
    fn same_as(&self, other: &u32) -> bool {
        self == other
    }

    #[inline(always)]
    fn conntrack() -> &'static LruHashMap<CtKeyOf<u32>, CtValueOf<u32>> {
        &CONNTRACK
    }

    #[inline(always)]
    fn is_frontend_address(&self) -> bool {
        // SAFETY: only checked for presence.
        unsafe { FRONTEND_ADDRESSES.get(self) }.is_some()
    }

    #[inline(always)]
    fn is_node_address(&self) -> bool {
        CONFIG
            .get(0)
            .is_some_and(|config| config.node_address == *self)
    }

    #[inline(always)]
    fn node_address() -> Option<u32> {
        CONFIG
            .get(0)
            .map(|config| config.node_address)
            .filter(|address| !address.same_as(&Self::UNSPECIFIED))
    }

    #[inline(always)]
    fn folded(&self) -> u32 {
        *self
    }

    #[inline(always)]
    fn source_allowed(&self, service: &ServiceValue) -> bool {
        source_allowed(service, *self)
    }

    #[inline(always)]
    fn affinity_client(&self) -> u64 {
        AFFINITY_CLIENT_ADDRESS | u64::from(*self)
    }

    #[inline(always)]
    fn port_unreachable(ctx: &TcContext) -> i32 {
        reject::port_unreachable(ctx)
    }

    #[inline(always)]
    fn fib_request(params: &mut bpf_fib_lookup, saddr: &u32, daddr: &u32) {
        params.family = AF_INET;
        params.__bindgen_anon_3.ipv4_src = *saddr;
        params.__bindgen_anon_4.ipv4_dst = *daddr;
    }

    #[inline(always)]
    fn replace_tc(
        ctx: &TcContext,
        packet: &TcPacket<u32>,
        offset: usize,
        old: &u32,
        new: &u32,
        l4_flags: u64,
    ) -> Result<(), i64> {
        if !packet.no_l4_csum {
            ctx.l4_csum_replace(
                packet.l4_csum,
                u64::from(*old),
                u64::from(*new),
                u64::from(BPF_F_PSEUDO_HDR) | l4_flags | 4,
            )?;
        }
        ctx.l3_csum_replace(IP_CSUM_OFF, u64::from(*old), u64::from(*new), 4)?;
        ctx.store(offset, new, 0)
    }
}

impl PacketAddress for Ipv6Words {
    type Family = V6;
    const SRC_OFF: usize = IP6_SRC_OFF;
    const DST_OFF: usize = IP6_DST_OFF;
    const UNSPECIFIED: Ipv6Words = [0; 4];
    #[inline(always)]
    fn parse_xdp(ctx: &XdpContext) -> Option<XdpPacket<Ipv6Words>> {
        parse_xdp6(ctx)
    }

    #[inline(always)]
    fn rewrite_xdp_addresses(
        header: &mut [u8; IP6_HLEN],
        key: &CtKeyOf<Ipv6Words>,
        entry: &CtValueOf<Ipv6Words>,
        l4_csum: u16,
    ) -> u16 {
        rewrite_addresses6(header, key, entry, l4_csum)
    }

    #[inline(always)]
    fn decrement_hop_limit(header: &mut [u8; IP6_HLEN]) -> bool {
        decrement_hop_limit6(header)
    }

    #[inline(always)]
    fn pod_port(&self) -> Option<u32> {
        // SAFETY: read and copied.
        unsafe { POD_PORTS6.get(self) }.copied()
    }

    /// By ifindex (`skiff_podports6` holds plain ifindexes: a device
    /// map's keys are 4 bytes). `bpf_redirect` queues and flushes the
    /// frame the way a device map redirect does; a port gone since the
    /// lookup fails the redirect and the frame is dropped, as it had no
    /// pod to go to anyway.
    #[inline(always)]
    fn redirect_to_pod(&self, port: u32) -> u32 {
        // SAFETY: a helper call on plain values.
        unsafe { bpf_redirect(port, 0) as u32 }
    }

    #[inline(always)]
    fn parse_tc(ctx: &TcContext) -> Option<TcPacket<Ipv6Words>> {
        parse_tc6(ctx)
    }

    #[inline(always)]
    fn same_as(&self, other: &Ipv6Words) -> bool {
        (self[0] ^ other[0]) | (self[1] ^ other[1]) | (self[2] ^ other[2]) | (self[3] ^ other[3])
            == 0
    }

    #[inline(always)]
    fn conntrack() -> &'static LruHashMap<CtKeyOf<Ipv6Words>, CtValueOf<Ipv6Words>> {
        &CONNTRACK6
    }

    #[inline(always)]
    fn is_frontend_address(&self) -> bool {
        // SAFETY: only checked for presence.
        unsafe { FRONTEND_ADDRESSES6.get(self) }.is_some()
    }

    #[inline(always)]
    fn is_node_address(&self) -> bool {
        NODE_ADDRESS6.get(0).is_some_and(|node| node.same_as(self))
    }

    #[inline(always)]
    fn node_address() -> Option<Ipv6Words> {
        NODE_ADDRESS6
            .get(0)
            .copied()
            .filter(|address| !address.same_as(&Self::UNSPECIFIED))
    }

    #[inline(always)]
    fn folded(&self) -> u32 {
        self[0] ^ self[1] ^ self[2] ^ self[3]
    }

    #[inline(always)]
    fn source_allowed(&self, service: &ServiceValue) -> bool {
        source_allowed6(service, self)
    }

    /// 63 bits of the 128, folded: two sources that fold alike share one
    /// affinity entry (a client only sticks to the other's backend).
    #[inline(always)]
    fn affinity_client(&self) -> u64 {
        let high = u64::from(self[0] ^ self[2]) << 32;
        let low = u64::from(self[1] ^ self[3]);
        AFFINITY_CLIENT_ADDRESS | ((high | low) & !AFFINITY_CLIENT_ADDRESS)
    }

    #[inline(always)]
    fn port_unreachable(ctx: &TcContext) -> i32 {
        reject::port_unreachable6(ctx)
    }

    #[inline(always)]
    fn fib_request(params: &mut bpf_fib_lookup, saddr: &Ipv6Words, daddr: &Ipv6Words) {
        params.family = AF_INET6;
        params.__bindgen_anon_3.ipv6_src = *saddr;
        params.__bindgen_anon_4.ipv6_dst = *daddr;
    }

    /// IPv6 has no header checksum; the L4 checksum covers the address
    /// through the pseudo-header, updated one 32-bit word at a time (the
    /// helper takes at most 4 bytes).
    #[inline(always)]
    fn replace_tc(
        ctx: &TcContext,
        packet: &TcPacket<Ipv6Words>,
        offset: usize,
        old: &Ipv6Words,
        new: &Ipv6Words,
        l4_flags: u64,
    ) -> Result<(), i64> {
        if !packet.no_l4_csum {
            for word in 0..4 {
                if old[word] != new[word] {
                    ctx.l4_csum_replace(
                        packet.l4_csum,
                        u64::from(old[word]),
                        u64::from(new[word]),
                        u64::from(BPF_F_PSEUDO_HDR) | l4_flags | 4,
                    )?;
                }
            }
        }
        ctx.store(offset, new, 0)
    }
}
