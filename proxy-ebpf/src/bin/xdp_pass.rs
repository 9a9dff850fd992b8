//! Not part of the agent: the local cluster's fabric side of each node's
//! uplink runs it so that frames the agent's XDP program transmits back
//! (XDP_TX) are taken at once. A veth schedules its peer's NAPI for them
//! only when the peer runs an XDP program (drivers/net/veth.c,
//! `veth_xdp_flush`); this one passes every frame on unchanged.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action::XDP_PASS, macros::xdp, programs::XdpContext};

#[xdp]
pub fn fabric_xdp_pass(_ctx: XdpContext) -> u32 {
    XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Nothing in the program can panic.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
