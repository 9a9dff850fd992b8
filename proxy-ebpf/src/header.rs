//! In-place rewrites of an IP header as the per-packet NAT makes them by
//! hand (XDP): its addresses with the checksums they are part of, and one
//! hop less to live, and the incremental checksum update (RFC 1624) they,
//! and the L4 ports' rewrite, rely on.
use proxy_common::{CtKeyOf, CtValueOf, Ipv6Words};

use crate::packet::{IP_HLEN, IP6_HLEN};

/// Writes `entry`'s addresses into an IPv4 header with its checksum, and
/// returns the L4 checksum `l4_csum` updated for them.
#[inline(always)]
pub fn rewrite_addresses4(
    header: &mut [u8; IP_HLEN],
    key: &CtKeyOf<u32>,
    entry: &CtValueOf<u32>,
    mut l4_csum: u16,
) -> u16 {
    let mut ip_csum = u16::from_ne_bytes([header[10], header[11]]);
    for (old, new) in [(key.saddr, entry.saddr), (key.daddr, entry.daddr)] {
        ip_csum = replace32(ip_csum, old, new);
        l4_csum = replace32(l4_csum, old, new);
    }
    header[10..12].copy_from_slice(&ip_csum.to_ne_bytes());
    header[12..16].copy_from_slice(&entry.saddr.to_ne_bytes());
    header[16..20].copy_from_slice(&entry.daddr.to_ne_bytes());
    l4_csum
}

/// Writes `entry`'s addresses into an IPv6 header (which has no checksum),
/// and returns the L4 checksum `l4_csum` updated for them.
#[inline(always)]
pub fn rewrite_addresses6(
    header: &mut [u8; IP6_HLEN],
    key: &CtKeyOf<Ipv6Words>,
    entry: &CtValueOf<Ipv6Words>,
    mut l4_csum: u16,
) -> u16 {
    for (at, old, new) in [
        (8, &key.saddr, &entry.saddr),
        (24, &key.daddr, &entry.daddr),
    ] {
        for word in 0..4 {
            l4_csum = replace32(l4_csum, old[word], new[word]);
            let start = at + 4 * word;
            header[start..start + 4].copy_from_slice(&new[word].to_ne_bytes());
        }
    }
    l4_csum
}

/// One hop less for an IPv4 header, with its checksum; `false` (untouched)
/// when the TTL has run out.
#[inline(always)]
pub fn decrement_ttl(header: &mut [u8; IP_HLEN]) -> bool {
    let ttl = header[8];
    if ttl <= 1 {
        return false;
    }
    // The TTL is the high byte of the header's fifth 16-bit word.
    let csum = u16::from_ne_bytes([header[10], header[11]]);
    let old = u16::from_ne_bytes([ttl, header[9]]);
    let new = u16::from_ne_bytes([ttl - 1, header[9]]);
    header[10..12].copy_from_slice(&replace16(csum, old, new).to_ne_bytes());
    header[8] = ttl - 1;
    true
}

/// One hop less for an IPv6 header (no checksum covers the hop limit);
/// `false` (untouched) when it has run out.
#[inline(always)]
pub fn decrement_hop_limit6(header: &mut [u8; IP6_HLEN]) -> bool {
    let hop_limit = header[7];
    if hop_limit <= 1 {
        return false;
    }
    header[7] = hop_limit - 1;
    true
}

/// The checksum `check` after a 32-bit field changed from `old` to `new`,
/// all as they sit in memory (the one's complement sum is byte order
/// independent).
#[inline(always)]
pub fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let check = replace16(check, old as u16, new as u16);
    replace16(check, (old >> 16) as u16, (new >> 16) as u16)
}

/// RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m').
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!check) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}
