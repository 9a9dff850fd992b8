//! The answer to a packet for a frontend without endpoints: the packet is
//! turned, in place, into an ICMP port unreachable (ICMPv6 destination
//! unreachable, port unreachable, for IPv6) to its sender and sent back out
//! of the interface it came in on. A TCP client's connect fails
//! at once with ECONNREFUSED, a connected UDP socket's next call too: what
//! kube-proxy's REJECT rules do, instead of a silent drop the client only
//! notices when it times out.
use aya_ebpf::{
    bindings::TC_ACT_SHOT,
    helpers::{bpf_csum_diff, bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use proxy_common::drop_reason;

use crate::{
    counters::count_drop,
    packet::{ETH_HLEN, IP_HLEN, IP6_HLEN},
};

/// The ICMP error quotes the offending IP header and 8 bytes after it.
const QUOTE_LEN: usize = IP_HLEN + 8;
/// New IP header, ICMP header, quote.
const ERROR_LEN: usize = IP_HLEN + 8 + QUOTE_LEN;
const IPPROTO_ICMP: u8 = 1;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;

/// The ICMPv6 error quotes the offending IPv6 header and 8 bytes after it
/// (the ports: what the sender's stack needs to find the socket; RFC 4443
/// allows up to the minimum MTU).
const QUOTE6_LEN: usize = IP6_HLEN + 8;
/// The ICMPv6 message: its header and the quote.
const ICMP6_LEN: usize = 8 + QUOTE6_LEN;
const IPPROTO_ICMPV6: u8 = 58;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PORT_UNREACH: u8 = 4;

/// Not inlined: its buffers get a stack frame of their own instead of
/// adding to the NAT path's (the verifier allows 512 bytes per chain).
#[inline(never)]
pub fn port_unreachable(ctx: &TcContext) -> i32 {
    send_back(ctx, rewrite_to_error(ctx))
}

/// `port_unreachable` for IPv6.
#[inline(never)]
pub fn port_unreachable6(ctx: &TcContext) -> i32 {
    send_back(ctx, rewrite_to_error6(ctx))
}

/// Sends the error back where the packet came from, or drops a packet
/// that could not be turned into one.
#[inline(always)]
fn send_back(ctx: &TcContext, rewritten: Option<()>) -> i32 {
    match rewritten {
        Some(()) => {
            // SAFETY: the context's skb is valid for the program's run.
            let ifindex = unsafe { (*ctx.skb.skb).ifindex };
            // SAFETY: a helper call with plain integer arguments.
            unsafe { bpf_redirect(ifindex, 0) as i32 }
        }
        None => {
            count_drop(drop_reason::MALFORMED);
            TC_ACT_SHOT
        }
    }
}

/// The packet's addresses are read from the quote, its own headers.
fn rewrite_to_error(ctx: &TcContext) -> Option<()> {
    // Fixed-size loads (the verifier needs constant lengths), into words so
    // that the checksum helper reads them aligned. The buffers are kept
    // small: this frame adds to the caller's on the 512-byte stack.
    let destination: [u8; 6] = ctx.load(0).ok()?;
    let source: [u8; 6] = ctx.load(6).ok()?;
    let mut quote: [u32; QUOTE_LEN / 4] = ctx.load(ETH_HLEN).ok()?;
    // A header with options would need a longer quote; such packets are
    // dropped (and counted) instead.
    if quote[0].to_ne_bytes()[0] != 0x45 {
        return None;
    }
    let (saddr, daddr) = (quote[3], quote[4]);

    // The new IP header and the ICMP header, checksums zero for now.
    let mut headers = [0u32; (IP_HLEN + 8) / 4];
    {
        // SAFETY: a plain byte view of the word buffer, of its exact size.
        let bytes: &mut [u8; IP_HLEN + 8] = unsafe { &mut *headers.as_mut_ptr().cast() };
        bytes[0] = 0x45;
        // Precedence "internetwork control", as Linux's own ICMP errors carry.
        bytes[1] = 0xc0;
        bytes[2..4].copy_from_slice(&(ERROR_LEN as u16).to_be_bytes());
        bytes[8] = 64;
        bytes[9] = IPPROTO_ICMP;
        // From the address the client called, to the client.
        bytes[12..16].copy_from_slice(&daddr.to_ne_bytes());
        bytes[16..20].copy_from_slice(&saddr.to_ne_bytes());
        bytes[IP_HLEN] = ICMP_DEST_UNREACH;
        bytes[IP_HLEN + 1] = ICMP_PORT_UNREACH;
    }
    let ip_checksum = fold(csum(&mut headers[..IP_HLEN / 4], 0)?);
    let icmp_sum = csum(&mut headers[IP_HLEN / 4..], 0)?;
    let icmp_checksum = fold(csum(&mut quote, icmp_sum)?);

    // SAFETY: the context's skb is valid; the new length keeps the
    // Ethernet header and holds the error exactly.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_HLEN + ERROR_LEN) as u32, 0) } != 0 {
        return None;
    }
    ctx.store(0, &source, 0).ok()?;
    ctx.store(6, &destination, 0).ok()?;
    ctx.store(ETH_HLEN, &headers, 0).ok()?;
    ctx.store(ETH_HLEN + IP_HLEN + 8, &quote, 0).ok()?;
    ctx.store(ETH_HLEN + 10, &ip_checksum, 0).ok()?;
    ctx.store(ETH_HLEN + IP_HLEN + 2, &icmp_checksum, 0).ok()?;
    Some(())
}

fn rewrite_to_error6(ctx: &TcContext) -> Option<()> {
    let destination: [u8; 6] = ctx.load(0).ok()?;
    let source: [u8; 6] = ctx.load(6).ok()?;
    let mut quote: [u32; QUOTE6_LEN / 4] = ctx.load(ETH_HLEN).ok()?;

    // The new IPv6 header and the ICMPv6 header, checksum zero for now.
    let mut headers = [0u32; (IP6_HLEN + 8) / 4];
    {
        // SAFETY: a plain byte view of the word buffer, of its exact size.
        let bytes: &mut [u8; IP6_HLEN + 8] = unsafe { &mut *headers.as_mut_ptr().cast() };
        bytes[0] = 0x60;
        bytes[4..6].copy_from_slice(&(ICMP6_LEN as u16).to_be_bytes());
        bytes[6] = IPPROTO_ICMPV6;
        bytes[7] = 64;
        bytes[IP6_HLEN] = ICMPV6_DEST_UNREACH;
        bytes[IP6_HLEN + 1] = ICMPV6_PORT_UNREACH;
    }
    // From the address the client called, to the client.
    headers[2..6].copy_from_slice(&quote[6..10]);
    headers[6..10].copy_from_slice(&quote[2..6]);
    // The checksum covers the pseudo-header: both addresses, the message's
    // length and the next header, each as a 32-bit word.
    let mut lengths = [
        (ICMP6_LEN as u32).to_be(),
        u32::from(IPPROTO_ICMPV6).to_be(),
    ];
    let sum = csum(&mut headers[2..10], 0)?;
    let sum = csum(&mut lengths, sum)?;
    let sum = csum(&mut headers[IP6_HLEN / 4..], sum)?;
    let icmp_checksum = fold(csum(&mut quote, sum)?);

    // SAFETY: as in `rewrite_to_error`.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_HLEN + IP6_HLEN + ICMP6_LEN) as u32, 0) } != 0
    {
        return None;
    }
    ctx.store(0, &source, 0).ok()?;
    ctx.store(6, &destination, 0).ok()?;
    ctx.store(ETH_HLEN, &headers, 0).ok()?;
    ctx.store(ETH_HLEN + IP6_HLEN + 8, &quote, 0).ok()?;
    ctx.store(ETH_HLEN + IP6_HLEN + 2, &icmp_checksum, 0).ok()?;
    Some(())
}

/// The one's complement sum of `words` added to `seed`, unfolded.
fn csum(words: &mut [u32], seed: u32) -> Option<u32> {
    // SAFETY: the helper reads `words.len() * 4` bytes from a live buffer.
    let sum = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            words.as_mut_ptr(),
            (words.len() * 4) as u32,
            seed,
        )
    };
    (sum >= 0).then_some(sum as u32)
}

/// The Internet checksum of an unfolded sum, as it is stored (in memory
/// order).
fn fold(sum: u32) -> u16 {
    let mut folded = (sum & 0xffff) + (sum >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    !(folded as u16)
}
