//! Not part of the agent: the local cluster's fabric side of each node's
//! uplink runs it so that frames the agent's XDP program transmits back
//! (XDP_TX) are taken at once. A veth schedules its peer's NAPI for them
//! only when the peer runs an XDP program (drivers/net/veth.c,
//! `veth_xdp_flush`); this one passes every frame on unchanged.
#![no_std]
#![no_main]

#[path = "../runtime.rs"]
mod runtime;

use aya_ebpf::{bindings::xdp_action::XDP_PASS, macros::xdp, programs::XdpContext};

#[xdp]
pub fn fabric_xdp_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}
