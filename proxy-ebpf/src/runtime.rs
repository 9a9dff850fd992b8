//! What every eBPF object of this crate needs besides its programs: a
//! panic handler for `no_std`, and the licence section the kernel reads
//! (GPL: `bpf_seq_write` and every kfunc the agent's programs call are
//! GPL-only). Each binary includes this file as a module of its own.

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier proves the programs cannot panic; this is never reached.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
