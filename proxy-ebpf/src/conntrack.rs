//! Per-packet connection tracking for NATed flows: two entries per flow, one
//! per direction, each saying how to rewrite the packets of that direction,
//! kept alive by the packets that use them.
use proxy_common::{CtKey, CtValue, PROTO_TCP};

use crate::{
    counters::count_frontend,
    maps::{BACKENDS, CONNTRACK},
};

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
pub fn live_entry(key: &CtKey, now: u64) -> Option<CtValue> {
    // SAFETY: read and copied.
    let entry = (unsafe { CONNTRACK.get(key) }).copied()?;
    let timeout = match (key.protocol, entry.closing) {
        (PROTO_TCP, 0) => TCP_TIMEOUT_NS,
        (PROTO_TCP, _) => TCP_CLOSING_TIMEOUT_NS,
        _ => UDP_TIMEOUT_NS,
    };
    // SAFETY: only checked for presence.
    let backend_exists = unsafe { BACKENDS.get(entry.backend_id) }.is_some();
    (now.wrapping_sub(entry.last_seen_ns) <= timeout && backend_exists).then_some(entry)
}

/// Writes both entries of a new flow; `false` if either insert failed.
#[inline(always)]
pub fn create(key: &CtKey, forward: &CtValue, reply_key: &CtKey, reply: &CtValue) -> bool {
    // The reply path exists before the first packet leaves.
    CONNTRACK.insert(reply_key, reply, 0).is_ok() && CONNTRACK.insert(key, forward, 0).is_ok()
}

/// Counts a packet of `len` bytes for the flow's frontend, and keeps the
/// flow's entry alive: refreshed at most once a second, and at once when
/// the flow starts closing.
#[inline(always)]
pub fn touch(key: &CtKey, entry: &CtValue, now: u64, tcp_closing: bool, len: u64) {
    count_frontend(entry.service_id, |stats| {
        stats.packets += 1;
        stats.bytes += len;
    });
    let closing = tcp_closing && entry.closing == 0;
    if closing || now.wrapping_sub(entry.last_seen_ns) > SECOND_NS {
        let refreshed = CtValue {
            last_seen_ns: now,
            closing: entry.closing | u8::from(tcp_closing),
            ..*entry
        };
        // Failing to refresh only shortens the entry's life.
        let _ = CONNTRACK.insert(key, &refreshed, 0);
    }
}
