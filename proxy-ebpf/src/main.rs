//! skiff's datapath: cgroup `sock_addr` programs that rewrite a connect or
//! send to a service frontend into one to a backend, before any packet
//! exists (`sock_lb`), and per-packet NAT on the node's uplink for traffic
//! from outside the node (`tc_nat`, with `xdp_nat` as its fast path).
#![no_std]
#![no_main]

mod flow;
mod maps;
mod reject;
mod shared;
mod sock_lb;
mod tc_nat;
mod xdp_nat;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves the programs cannot panic; this is never reached.
    loop {}
}

// The socket cookie and random helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
