//! skiff's socket-level load balancer: cgroup `sock_addr` programs that
//! rewrite a connect or send to a service frontend into one to a backend,
//! before any packet exists, and show the frontend again to the application
//! on the way back (recvmsg, getpeername).
#![no_std]
#![no_main]

mod maps;
mod nodeport;
mod shared;
mod sock_lb;
mod sock_reset;

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
