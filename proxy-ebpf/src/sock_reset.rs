//! Resets connected UDP sockets whose backend went away.
//!
//! `connect4` fixes a connected UDP socket to one backend for its whole
//! life: when that backend leaves its service, the application would keep
//! sending into the void. The agent lists the (frontend, backend) pairs it
//! removed in the orphans map and runs this `iter/udp` program, which walks
//! the sockets of one network namespace and destroys (`bpf_sock_destroy`:
//! `ECONNABORTED` on the next call) each one that `connect4` translated to
//! an orphaned backend. The socket reverse-NAT entry, keyed by socket
//! cookie, is what tells a translated socket from one connected straight to
//! the pod: that one is left alone.
//!
//! aya-ebpf has no iterator macro: the program is a plain function in the
//! `iter/udp` section taking the kernel's `struct bpf_iter__udp`.
use core::{ffi::c_void, ptr};

use aya_ebpf::{
    bindings::seq_file,
    helpers::{bpf_get_socket_cookie, bpf_seq_write},
};
use proxy_common::{Backend, OrphanKey, PROTO_UDP, ServiceKey, SockRevNatKey, SocketReset};

use crate::maps::{ORPHANS, SOCK_REV_NAT};

const AF_INET: u16 = 2;

/// `struct bpf_iter_meta`.
#[repr(C)]
pub struct IterMeta {
    seq: *mut seq_file,
    session_id: u64,
    seq_num: u64,
}

/// `struct bpf_iter__udp`: one socket per call, `udp_sk` NULL on the last.
#[repr(C)]
pub struct IterUdp {
    meta: *mut IterMeta,
    udp_sk: *mut c_void,
    uid: u32,
    bucket: i32,
}

/// The head of `struct sock_common`, the first member of every socket: its
/// layout is part of the kernel's stable BTF-visible ABI (unchanged since
/// these fields exist).
#[repr(C)]
struct SockCommon {
    daddr: u32,
    rcv_saddr: u32,
    hash: u32,
    dport: u16,
    num: u16,
    family: u16,
}

unsafe extern "C" {
    /// The kernel's `bpf_sock_destroy` kfunc (Linux 6.5+), only callable
    /// from TCP and UDP iterators, which hold the socket lock. bpf-linker
    /// leaves the call against an undefined symbol; the agent turns it into
    /// a kfunc call before loading (aya 0.14 does not relocate kfuncs).
    fn bpf_sock_destroy(sock: *mut c_void) -> i32;
}

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/udp")]
pub fn skiff_reset_udp(ctx: *mut IterUdp) -> i32 {
    // SAFETY: the kernel passes a valid `bpf_iter__udp`.
    let (meta, sk) = unsafe { ((*ctx).meta, (*ctx).udp_sk) };
    if sk.is_null() {
        return 0;
    }
    let common = sk as *const SockCommon;
    // SAFETY: the verifier checks these loads against the kernel's BTF of
    // `struct udp_sock`; volatile so each stays one load of its own field.
    let (family, daddr, dport, saddr, sport) = unsafe {
        (
            ptr::read_volatile(&(*common).family),
            ptr::read_volatile(&(*common).daddr),
            ptr::read_volatile(&(*common).dport),
            ptr::read_volatile(&(*common).rcv_saddr),
            ptr::read_volatile(&(*common).num),
        )
    };
    if family != AF_INET || daddr == 0 {
        return 0;
    }
    // SAFETY: `sk` is a socket the helper accepts (BTF-typed sock_common).
    let cookie = unsafe { bpf_get_socket_cookie(sk) };
    let reverse_key = SockRevNatKey {
        cookie,
        address: daddr,
        port: dport,
        pad: 0,
    };
    // SAFETY: read and copied.
    let Some(frontend) = (unsafe { SOCK_REV_NAT.get(&reverse_key) }).copied() else {
        return 0;
    };
    let orphan = OrphanKey {
        frontend: ServiceKey {
            address: frontend.address,
            port: frontend.port,
            protocol: PROTO_UDP,
            pad: 0,
        },
        backend: Backend {
            address: daddr,
            port: dport,
            protocol: PROTO_UDP,
            pad: 0,
        },
    };
    // SAFETY: only checked for presence.
    if unsafe { ORPHANS.get(&orphan) }.is_none() {
        return 0;
    }
    // SAFETY: `sk` is the iterator's locked, trusted socket.
    let result = unsafe { bpf_sock_destroy(sk) };
    // The socket is no longer connected to that backend; its next connect
    // writes a fresh entry.
    let _ = SOCK_REV_NAT.remove(&reverse_key);
    let record = SocketReset {
        cookie,
        frontend: orphan.frontend,
        backend: orphan.backend,
        local_address: saddr,
        local_port: sport,
        pad: 0,
        result,
        pad2: 0,
    };
    // SAFETY: `meta` is valid for the call; the record lives on the stack
    // for its duration. A full output buffer only loses the record (the
    // agent then counts fewer resets than happened).
    unsafe {
        bpf_seq_write(
            (*meta).seq,
            ptr::from_ref(&record).cast(),
            size_of::<SocketReset>() as u32,
        );
    }
    0
}
