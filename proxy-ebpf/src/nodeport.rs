//! Per-packet NAT on the node's uplink (TCX ingress and egress) for
//! NodePort traffic that comes from outside the node.
//!
//! A new flow to `<node address>:<nodePort>` is balanced by a hash of its
//! 5-tuple, so every packet of it (and the same flow arriving again) picks
//! the same backend. Two conntrack entries are written, one per direction,
//! each saying how to rewrite the packets of that direction:
//!
//! - local backend: DNAT to the pod; the stack routes it to the pod, and
//!   the reply is turned back into `<node>:<nodePort>` on egress;
//! - remote backend: DNAT and SNAT to this node's address and a free port,
//!   redirected out of the uplink (the stack would drop a packet arriving
//!   with its own source address); the reply comes back to this node and is
//!   rewritten to the client and redirected out again.
//!
//! IPv4 fragments other than the first, and anything not TCP or UDP over
//! IPv4, pass untouched: a NodePort flow's packets carry no fragments in the
//! local cluster (MTU 1500 end to end), and the stack handles the rest.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, TC_ACT_OK, TC_ACT_SHOT, bpf_fib_lookup},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_ktime_get_ns, bpf_redirect_neigh},
    macros::classifier,
    programs::TcContext,
};
use proxy_common::{
    CT_PASS, CT_REDIRECT, CtKey, CtValue, PROTO_TCP, PROTO_UDP, ServiceKey, drop_reason,
};

use crate::{
    maps::{BACKENDS, CONNTRACK, SERVICES},
    shared::{count_drop, count_frontend, slot_backend},
};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const IP_FRAG_OFF: usize = ETH_HLEN + 6;
const IP_PROTO_OFF: usize = ETH_HLEN + 9;
const IP_CSUM_OFF: usize = ETH_HLEN + 10;
const IP_SRC_OFF: usize = ETH_HLEN + 12;
const IP_DST_OFF: usize = ETH_HLEN + 16;
/// More-fragments flag and fragment offset.
const IP_FRAGMENTED: u16 = 0x3fff;
const TCP_FIN: u8 = 0x01;
const TCP_RST: u8 = 0x04;

const AF_INET: u8 = 2;
const FIB_SUCCESS: i64 = 0;
const FIB_NO_NEIGH: i64 = 7;

const SECOND_NS: u64 = 1_000_000_000;
/// Idle lifetimes of a flow's entries.
const TCP_TIMEOUT_NS: u64 = 2 * 3600 * SECOND_NS;
const TCP_CLOSING_TIMEOUT_NS: u64 = 10 * SECOND_NS;
const UDP_TIMEOUT_NS: u64 = 60 * SECOND_NS;

/// SNAT ports for flows to remote backends: the range Linux leaves to
/// ephemeral ports by default, tried at a few hashed places.
const SNAT_PORT_FIRST: u32 = 32_768;
const SNAT_PORT_COUNT: u32 = 28_232;
const SNAT_ATTEMPTS: u32 = 4;

/// The headers of one TCP or UDP over IPv4 packet that NAT touches.
struct Packet {
    key: CtKey,
    l4: usize,
    l4_csum: usize,
    /// UDP without a checksum: there is none to update.
    no_l4_csum: bool,
    tcp_closing: bool,
}

#[classifier]
pub fn skiff_nodeport_ingress(ctx: TcContext) -> i32 {
    let Some(packet) = parse(&ctx) else {
        return TC_ACT_OK;
    };
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(entry) = live_entry(&packet.key, now) {
        return apply(&ctx, &packet, entry, now);
    }
    match new_flow(&ctx, &packet, now) {
        Some(entry) => apply(&ctx, &packet, entry, now),
        None => TC_ACT_OK,
    }
}

/// Replies of pods on this node to NodePort clients.
#[classifier]
pub fn skiff_nodeport_egress(ctx: TcContext) -> i32 {
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

/// The entry for `key` unless it has expired or its backend is gone (the
/// flow is then balanced afresh).
#[inline(always)]
fn live_entry(key: &CtKey, now: u64) -> Option<CtValue> {
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

/// Balances a new flow if it is for a NodePort frontend: picks the backend,
/// writes both conntrack entries and returns the forward one.
#[inline(always)]
fn new_flow(ctx: &TcContext, packet: &Packet, now: u64) -> Option<CtValue> {
    let key = &packet.key;
    let frontend = ServiceKey {
        address: key.daddr,
        port: key.dport,
        protocol: key.protocol,
        pad: 0,
    };
    // SAFETY: read and copied.
    let service = (unsafe { SERVICES.get(&frontend) }).copied()?;
    if service.backend_count == 0 {
        count_drop(drop_reason::NO_ENDPOINTS);
        count_frontend(service.id, |stats| stats.refused += 1);
        return Some(drop_entry());
    }
    let hash = flow_hash(key);
    let Some(backend_id) = slot_backend(service.id, hash % service.backend_count) else {
        count_drop(drop_reason::NO_BACKEND);
        return Some(drop_entry());
    };
    // SAFETY: read and copied.
    let Some(backend) = (unsafe { BACKENDS.get(backend_id) }).copied() else {
        count_drop(drop_reason::NO_BACKEND);
        return Some(drop_entry());
    };

    let entry = |saddr, daddr, sport, dport, action| CtValue {
        last_seen_ns: now,
        saddr,
        daddr,
        backend_id,
        sport,
        dport,
        action,
        closing: 0,
        pad: [0; 6],
    };
    let (forward, reply_key, reply) = if is_local(ctx, backend.address) {
        let reply_key = CtKey {
            saddr: backend.address,
            daddr: key.saddr,
            sport: backend.port,
            dport: key.sport,
            protocol: key.protocol,
            pad: [0; 3],
        };
        (
            entry(key.saddr, backend.address, key.sport, backend.port, CT_PASS),
            reply_key,
            entry(key.daddr, key.saddr, key.dport, key.sport, CT_PASS),
        )
    } else {
        let Some((snat_port, reply_key)) = snat_port(key, backend.address, backend.port, hash, now)
        else {
            count_drop(drop_reason::NO_SNAT_PORT);
            return Some(drop_entry());
        };
        (
            entry(
                key.daddr,
                backend.address,
                snat_port,
                backend.port,
                CT_REDIRECT,
            ),
            reply_key,
            entry(key.daddr, key.saddr, key.dport, key.sport, CT_REDIRECT),
        )
    };
    // The reply path exists before the first packet leaves.
    CONNTRACK.insert(&reply_key, &reply, 0).ok()?;
    CONNTRACK.insert(key, &forward, 0).ok()?;
    count_frontend(service.id, |stats| stats.connects += 1);
    Some(forward)
}

/// A flow the frontend cannot serve: its packets are dropped (and counted),
/// never passed on to an address nothing answers.
#[inline(always)]
fn drop_entry() -> CtValue {
    CtValue {
        last_seen_ns: 0,
        saddr: 0,
        daddr: 0,
        backend_id: 0,
        sport: 0,
        dport: 0,
        action: u8::MAX,
        closing: 0,
        pad: [0; 6],
    }
}

/// A source port on this node's address for a flow to a remote backend,
/// and the key its replies will carry; `None` if the hashed candidates are
/// all taken by live flows.
#[inline(always)]
fn snat_port(
    key: &CtKey,
    backend_address: u32,
    backend_port: u16,
    hash: u32,
    now: u64,
) -> Option<(u16, CtKey)> {
    for attempt in 0..SNAT_ATTEMPTS {
        let port = SNAT_PORT_FIRST
            + (hash >> 8).wrapping_add(attempt.wrapping_mul(7919)) % SNAT_PORT_COUNT;
        let port = (port as u16).to_be();
        let reply_key = CtKey {
            saddr: backend_address,
            daddr: key.daddr,
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

/// Whether the stack routes `address` out of another device than the one
/// the packet came in on: a pod on this node.
#[inline(always)]
fn is_local(ctx: &TcContext, address: u32) -> bool {
    // SAFETY: the context's skb is valid for the program's run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.family = AF_INET;
    params.ifindex = ifindex;
    params.__bindgen_anon_4.ipv4_dst = address;
    // SAFETY: `params` is a live, initialised lookup request of its size.
    let result = unsafe {
        fib_lookup(
            ctx.skb.skb.cast(),
            &mut params,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    (result == FIB_SUCCESS || result == FIB_NO_NEIGH) && params.ifindex != ifindex
}

#[inline(always)]
fn flow_hash(key: &CtKey) -> u32 {
    let ports = (u32::from(key.sport) << 16) | u32::from(key.dport);
    let mut hash = key.saddr ^ key.daddr.rotate_left(13) ^ ports ^ u32::from(key.protocol);
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x7feb_352d);
    hash ^= hash >> 15;
    hash = hash.wrapping_mul(0x846c_a68b);
    hash ^ (hash >> 16)
}

/// Rewrites the packet as `entry` says, then passes or redirects it.
#[inline(always)]
fn apply(ctx: &TcContext, packet: &Packet, entry: CtValue, now: u64) -> i32 {
    if entry.action != CT_PASS && entry.action != CT_REDIRECT {
        return TC_ACT_SHOT;
    }
    let closing = packet.tcp_closing && entry.closing == 0;
    if closing || now.wrapping_sub(entry.last_seen_ns) > SECOND_NS {
        let refreshed = CtValue {
            last_seen_ns: now,
            closing: entry.closing | u8::from(packet.tcp_closing),
            ..entry
        };
        // Failing to refresh only shortens the entry's life.
        let _ = CONNTRACK.insert(&packet.key, &refreshed, 0);
    }
    if rewrite(ctx, packet, &entry).is_err() {
        return TC_ACT_SHOT;
    }
    if entry.action == CT_REDIRECT {
        // SAFETY: the context's skb is valid for the program's run.
        let ifindex = unsafe { (*ctx.skb.skb).ifindex };
        // SAFETY: no neighbour parameters: the kernel resolves the next hop
        // for the packet's new destination itself.
        return unsafe { bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) } as i32;
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
