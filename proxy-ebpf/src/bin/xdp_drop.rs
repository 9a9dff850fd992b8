//! Not part of the agent: the benchmark's ceiling for packets per second
//! at XDP. Attached by `cargo xtask bench` to an uplink of its own cluster,
//! it drops every packet before the kernel spends anything else on it, so
//! no XDP program on that link can see more packets per second.
#![no_std]
#![no_main]

#[path = "../runtime.rs"]
mod runtime;

use aya_ebpf::{bindings::xdp_action::XDP_DROP, macros::xdp, programs::XdpContext};

#[xdp]
pub fn bench_xdp_drop(_ctx: XdpContext) -> u32 {
    XDP_DROP
}
