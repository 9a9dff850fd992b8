//! Routing decisions through the kernel's FIB: where the stack would send
//! a packet, asked before the packet is handed back to it.
use core::ffi::c_void;

use aya_ebpf::{bindings::bpf_fib_lookup, helpers::bpf_fib_lookup as fib_lookup};

use crate::family::PacketAddress;

const FIB_SUCCESS: i64 = 0;
/// Routed, but the next hop's neighbour entry is not resolved yet: the
/// route (and so the egress interface) is still known.
const FIB_NO_NEIGH: i64 = 7;

/// A FIB lookup for a packet from `saddr` to `daddr` arriving on `ifindex`:
/// the result code, and the egress interface on success.
#[inline(always)]
fn route<A: PacketAddress>(
    ctx: *mut c_void,
    ifindex: u32,
    saddr: &A,
    daddr: &A,
) -> (i64, bpf_fib_lookup) {
    // SAFETY: all-zero is a valid value of this plain C struct.
    let mut params: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    params.ifindex = ifindex;
    A::fib_request(&mut params, saddr, daddr);
    // SAFETY: `ctx` is the running program's context and `params` a live,
    // initialised lookup request of its size.
    let result = unsafe {
        fib_lookup(
            ctx,
            &mut params,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    (result, params)
}

/// Whether the stack routes `address` out of another device than the one
/// the packet came in on (the uplink): a pod on this node.
#[inline(always)]
pub fn is_local<A: PacketAddress>(ctx: *mut c_void, ifindex: u32, address: A) -> bool {
    let (result, params) = route(ctx, ifindex, &A::UNSPECIFIED, &address);
    (result == FIB_SUCCESS || result == FIB_NO_NEIGH) && params.ifindex != ifindex
}

/// The interface the stack routes a packet from `saddr` to `daddr` out of.
#[inline(always)]
pub fn egress_ifindex<A: PacketAddress>(
    ctx: *mut c_void,
    ifindex: u32,
    saddr: A,
    daddr: A,
) -> Option<u32> {
    let (result, params) = route(ctx, ifindex, &saddr, &daddr);
    (result == FIB_SUCCESS || result == FIB_NO_NEIGH).then_some(params.ifindex)
}

/// Where the stack's forwarding would send a packet: out of `ifindex`,
/// from the link-layer address `source` to the next hop's `destination`.
pub struct NextHop {
    pub ifindex: u32,
    pub source: [u8; 6],
    pub destination: [u8; 6],
}

/// The next hop of a packet from `saddr` to `daddr` arriving on `ifindex`.
/// `None` unless the route and its neighbour entry are both resolved (a
/// packet the stack itself delivers locally has no next hop).
#[inline(always)]
pub fn next_hop<A: PacketAddress>(
    ctx: *mut c_void,
    ifindex: u32,
    saddr: A,
    daddr: A,
) -> Option<NextHop> {
    let (result, params) = route(ctx, ifindex, &saddr, &daddr);
    (result == FIB_SUCCESS).then_some(NextHop {
        ifindex: params.ifindex,
        source: params.smac,
        destination: params.dmac,
    })
}
