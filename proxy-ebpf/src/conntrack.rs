//! Per-packet connection tracking for NATed flows: two entries per flow, one
//! per direction, each saying how to rewrite the packets of that direction,
//! kept alive by the packets that use them. Each family has its own map
//! (`PacketAddress::conntrack`).
use proxy_common::{CtKeyOf, CtValueOf, PROTO_TCP};

use crate::{counters::count_frontend, family::PacketAddress, select::Family};

const SECOND_NS: u64 = 1_000_000_000;
/// Idle lifetimes of a flow's entries: long for an open TCP connection,
/// short once a FIN or RST was seen, in between for UDP (as Linux's own
/// conntrack does for an assured UDP stream).
const TCP_TIMEOUT_NS: u64 = 2 * 3600 * SECOND_NS;
const TCP_CLOSING_TIMEOUT_NS: u64 = 10 * SECOND_NS;
const UDP_TIMEOUT_NS: u64 = 60 * SECOND_NS;

/// The entry for `key` unless it has expired or its backend is gone (the
/// flow is then balanced afresh).
#[inline(always)]
pub fn live_entry<A: PacketAddress>(key: &CtKeyOf<A>, now: u64) -> Option<CtValueOf<A>> {
    // SAFETY: read and copied.
    let entry = (unsafe { A::conntrack().get(key) }).copied()?;
    let timeout = match (key.protocol, entry.closing) {
        (PROTO_TCP, 0) => TCP_TIMEOUT_NS,
        (PROTO_TCP, _) => TCP_CLOSING_TIMEOUT_NS,
        _ => UDP_TIMEOUT_NS,
    };
    let backend_exists = A::Family::backend(entry.backend_id).is_some();
    (now.wrapping_sub(entry.last_seen_ns) <= timeout && backend_exists).then_some(entry)
}

/// Writes one entry of a new flow; `false` if the insert failed.
#[inline(always)]
pub fn insert<A: PacketAddress>(key: &CtKeyOf<A>, entry: &CtValueOf<A>) -> bool {
    A::conntrack().insert(key, entry, 0).is_ok()
}

/// Counts a packet of `len` bytes for the flow's frontend, and keeps the
/// flow's entry alive: refreshed at most once a second, and at once when
/// the flow starts closing.
#[inline(always)]
pub fn touch<A: PacketAddress>(
    key: &CtKeyOf<A>,
    entry: &CtValueOf<A>,
    now: u64,
    tcp_closing: bool,
    len: u64,
) {
    count_frontend(entry.service_id, |stats| {
        stats.packets += 1;
        stats.bytes += len;
    });
    let closing = tcp_closing && entry.closing == 0;
    if closing || now.wrapping_sub(entry.last_seen_ns) > SECOND_NS {
        let refreshed = CtValueOf {
            last_seen_ns: now,
            closing: entry.closing | u8::from(tcp_closing),
            ..*entry
        };
        // Failing to refresh only shortens the entry's life.
        let _ = A::conntrack().insert(key, &refreshed, 0);
    }
}
