//! The headers of a TCP or UDP packet that NAT reads and rewrites, parsed
//! from an skb (TCX, through the load helpers; IPv4 and IPv6) or from an
//! XDP frame (direct packet access, every read bounds-checked first; IPv4
//! and IPv6 too).
//!
//! IPv4 fragments (the first one too: the others, without ports, could not
//! follow it to its backend), IPv6 packets with extension headers (a
//! fragment header among them) and anything not TCP or UDP are not parsed:
//! a NodePort flow's packets carry neither in the local cluster (MTU 1500
//! end to end), and the stack handles the rest.
use core::mem::size_of;

use aya_ebpf::programs::{TcContext, XdpContext};
use proxy_common::{CtKeyOf, Ipv6Words, PROTO_TCP, PROTO_UDP};

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
/// An IPv4 header without options.
pub const IP_HLEN: usize = 20;
const IP_FRAG_OFF: usize = ETH_HLEN + 6;
const IP_PROTO_OFF: usize = ETH_HLEN + 9;
pub const IP_CSUM_OFF: usize = ETH_HLEN + 10;
pub const IP_SRC_OFF: usize = ETH_HLEN + 12;
pub const IP_DST_OFF: usize = ETH_HLEN + 16;
/// An IPv6 header (extension headers are not parsed).
pub const IP6_HLEN: usize = 40;
const IP6_NEXT_HEADER_OFF: usize = ETH_HLEN + 6;
pub const IP6_SRC_OFF: usize = ETH_HLEN + 8;
pub const IP6_DST_OFF: usize = ETH_HLEN + 24;
/// More-fragments flag and fragment offset.
const IP_FRAGMENTED: u16 = 0x3fff;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

/// The headers of one packet seen by a TCX program, as offsets for the skb
/// helpers; `A` is the address (`u32` or `Ipv6Words`).
pub struct TcPacket<A> {
    pub key: CtKeyOf<A>,
    /// Offset of the IP header's end: where the L4 header starts.
    pub l4: usize,
    pub l4_csum: usize,
    /// UDP without a checksum: there is none to update.
    pub no_l4_csum: bool,
    pub tcp_closing: bool,
}

/// An skb's ethertype.
#[inline(always)]
pub fn ethertype_tc(ctx: &TcContext) -> Option<u16> {
    ctx.load::<u16>(12).ok().map(u16::from_be)
}

/// Parses an IPv4 skb's headers (the caller checked the ethertype). IP
/// options are skipped over (the header length is read, not assumed).
#[inline(always)]
pub fn parse_tc4(ctx: &TcContext) -> Option<TcPacket<u32>> {
    let version_ihl: u8 = ctx.load(ETH_HLEN).ok()?;
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || header_len < IP_HLEN {
        return None;
    }
    let fragment: u16 = ctx.load(IP_FRAG_OFF).ok()?;
    if u16::from_be(fragment) & IP_FRAGMENTED != 0 {
        return None;
    }
    let protocol: u8 = ctx.load(IP_PROTO_OFF).ok()?;
    let saddr = ctx.load(IP_SRC_OFF).ok()?;
    let daddr = ctx.load(IP_DST_OFF).ok()?;
    parse_l4(ctx, ETH_HLEN + header_len, protocol, saddr, daddr)
}

/// Parses an IPv6 skb's headers (the caller checked the ethertype): TCP or
/// UDP straight after the fixed header.
#[inline(always)]
pub fn parse_tc6(ctx: &TcContext) -> Option<TcPacket<Ipv6Words>> {
    let version: u8 = ctx.load(ETH_HLEN).ok()?;
    if version >> 4 != 6 {
        return None;
    }
    let protocol: u8 = ctx.load(IP6_NEXT_HEADER_OFF).ok()?;
    let saddr = ctx.load(IP6_SRC_OFF).ok()?;
    let daddr = ctx.load(IP6_DST_OFF).ok()?;
    parse_l4(ctx, ETH_HLEN + IP6_HLEN, protocol, saddr, daddr)
}

/// The L4 part of a parse: ports, checksum offset, TCP closing flags.
#[inline(always)]
fn parse_l4<A>(
    ctx: &TcContext,
    l4: usize,
    protocol: u8,
    saddr: A,
    daddr: A,
) -> Option<TcPacket<A>> {
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
    Some(TcPacket {
        key: CtKeyOf {
            saddr,
            daddr,
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

/// What two direct reads of an skb's linear data or an XDP frame tell (no
/// helper call, unlike the skb parse's reads; no parse of the rest, unlike
/// the XDP parse).
pub enum Peeked {
    /// An IPv4 packet to this address.
    Ipv4(u32),
    Ipv6,
    /// Neither IPv4 nor IPv6.
    Other,
    /// The headers are not in the linear data (the helpers can still read
    /// them).
    Unknown,
}

#[inline(always)]
pub fn peek_tc(ctx: &TcContext) -> Peeked {
    peek(ctx.data(), ctx.data_end())
}

/// As `peek_tc`, for an XDP frame (whose headers are all in its data).
#[inline(always)]
pub fn peek_xdp(ctx: &XdpContext) -> Peeked {
    peek(ctx.data(), ctx.data_end())
}

/// The two reads of a peek at a packet's data from `start` to `end`.
#[inline(always)]
fn peek(start: usize, end: usize) -> Peeked {
    if start + IP_DST_OFF + size_of::<u32>() > end {
        return Peeked::Unknown;
    }
    // SAFETY: both reads are inside the bounds checked above.
    let (ethertype, daddr) = unsafe {
        (
            core::ptr::read_unaligned((start + 12) as *const u16),
            core::ptr::read_unaligned((start + IP_DST_OFF) as *const u32),
        )
    };
    match u16::from_be(ethertype) {
        ETH_P_IP => Peeked::Ipv4(daddr),
        ETH_P_IPV6 => Peeked::Ipv6,
        _ => Peeked::Other,
    }
}

/// The headers of one XDP frame of family `A`, with pointers into the
/// frame for the fields NAT rewrites. IPv4 headers without options and
/// IPv6 headers without extension headers are handled here.
/// The IP header of an address family's XDP frame, as the NAT rewrites it
/// in place.
pub trait XdpHeader {
    type Header;
}

impl XdpHeader for u32 {
    /// Without options.
    type Header = [u8; IP_HLEN];
}

impl XdpHeader for Ipv6Words {
    /// Without extension headers.
    type Header = [u8; IP6_HLEN];
}

pub struct XdpPacket<A: XdpHeader> {
    pub key: CtKeyOf<A>,
    pub eth: *mut [u8; ETH_HLEN],
    /// The IP header (20 or 40 bytes).
    pub ip: *mut A::Header,
    pub ports: *mut [u16; 2],
    /// Where the L4 checksum is; null for IPv4 UDP sent without one.
    pub l4_csum: *mut u16,
    pub tcp_closing: bool,
}

/// A pointer to a `T` at `offset` in the frame, if the frame holds one. The
/// comparison against `data_end` is the shape the verifier needs to allow
/// the access through the pointer.
#[inline(always)]
fn at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let start = ctx.data();
    if start + offset + size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Parses an IPv4 frame's headers (the caller checked the ethertype).
/// Options are not parsed: such a frame is left to TCX.
#[inline(always)]
pub fn parse_xdp4(ctx: &XdpContext) -> Option<XdpPacket<u32>> {
    let ip: *mut [u8; IP_HLEN] = at(ctx, ETH_HLEN)?;
    // SAFETY: every pointer `at` returns is inside the packet.
    let header = unsafe { &*ip };
    if header[0] != 0x45 || u16::from_be_bytes([header[6], header[7]]) & IP_FRAGMENTED != 0 {
        return None;
    }
    let saddr = u32::from_ne_bytes([header[12], header[13], header[14], header[15]]);
    let daddr = u32::from_ne_bytes([header[16], header[17], header[18], header[19]]);
    parse_xdp_l4(ctx, ip, ETH_HLEN + IP_HLEN, header[9], saddr, daddr, true)
}

/// Parses an IPv6 frame's headers (the caller checked the ethertype): TCP
/// or UDP straight after the fixed header.
#[inline(always)]
pub fn parse_xdp6(ctx: &XdpContext) -> Option<XdpPacket<Ipv6Words>> {
    let ip: *mut [u8; IP6_HLEN] = at(ctx, ETH_HLEN)?;
    let addresses: *mut [Ipv6Words; 2] = at(ctx, IP6_SRC_OFF)?;
    // SAFETY: as in `parse_xdp4`.
    let (header, [saddr, daddr]) = unsafe { (&*ip, core::ptr::read_unaligned(addresses)) };
    if header[0] >> 4 != 6 {
        return None;
    }
    parse_xdp_l4(ctx, ip, ETH_HLEN + IP6_HLEN, header[6], saddr, daddr, false)
}

/// The L4 part of an XDP parse. `udp_csum_optional`: an all-zero UDP
/// checksum means "none" (IPv4); in IPv6 it is invalid, and such a packet
/// is left to the stack, which drops it.
#[inline(always)]
fn parse_xdp_l4<A: XdpHeader>(
    ctx: &XdpContext,
    ip: *mut A::Header,
    l4: usize,
    protocol: u8,
    saddr: A,
    daddr: A,
    udp_csum_optional: bool,
) -> Option<XdpPacket<A>> {
    let eth: *mut [u8; ETH_HLEN] = at(ctx, 0)?;
    let ports: *mut [u16; 2] = at(ctx, l4)?;
    let (l4_csum, tcp_closing) = match protocol {
        PROTO_TCP => {
            let flags: *mut u8 = at(ctx, l4 + 13)?;
            let csum: *mut u16 = at(ctx, l4 + 16)?;
            // SAFETY: as in `parse_xdp4`.
            (csum, unsafe { *flags } & (TCP_FIN | TCP_RST) != 0)
        }
        PROTO_UDP => {
            let csum: *mut u16 = at(ctx, l4 + 6)?;
            // SAFETY: as in `parse_xdp4`.
            if unsafe { *csum } != 0 {
                (csum, false)
            } else if udp_csum_optional {
                (core::ptr::null_mut(), false)
            } else {
                return None;
            }
        }
        _ => return None,
    };
    // SAFETY: as in `parse_xdp4`.
    let [sport, dport] = unsafe { *ports };
    Some(XdpPacket {
        key: CtKeyOf {
            saddr,
            daddr,
            sport,
            dport,
            protocol,
            pad: [0; 3],
        },
        eth,
        ip,
        ports,
        l4_csum,
        tcp_closing,
    })
}
