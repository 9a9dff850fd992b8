//! Resets connected UDP sockets whose backend went away.
//!
//! `connect4` and `connect6` fix a connected UDP socket to one backend for
//! its whole life: when that backend leaves its service, the application
//! would keep sending into the void. The agent lists the (frontend,
//! backend) pairs it removed in the orphans maps and runs these `iter/udp`
//! programs (one per family), which walk the sockets of one network
//! namespace and destroy (`bpf_sock_destroy`: `ECONNABORTED` on the next
//! call) each one that a socket hook translated to an orphaned backend. An
//! IPv6 socket connected to an IPv4-mapped address is the IPv4 program's:
//! the hooks translated it through the IPv4 maps. The socket reverse-NAT entry, keyed by socket
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
use proxy_common::{
    Backend, Backend6, Ipv6Words, OrphanKey, OrphanKey6, PROTO_UDP, ServiceKey, ServiceKey6,
    SockRevNatKey, SockRevNatKey6, SocketReset, SocketReset6,
};

use crate::maps::{ORPHANS, ORPHANS6, SOCK_REV_NAT, SOCK_REV_NAT6};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

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

/// The head of `struct sock_common`, the first member of every socket, up
/// to its IPv6 addresses: its layout is part of the kernel's BTF-visible
/// ABI (the IPv4 fields unchanged since they exist; the IPv6 ones follow
/// the bind node, `skc_prot` and `skc_net` on 64-bit kernels with network
/// namespaces and IPv6, which skiff needs anyway). The verifier checks
/// every load against the running kernel's BTF.
#[repr(C)]
struct SockCommon {
    daddr: u32,
    rcv_saddr: u32,
    hash: u32,
    dport: u16,
    num: u16,
    family: u16,
    state: u8,
    flags: u8,
    bound_dev_if: i32,
    bind_node: [u64; 2],
    prot: u64,
    net: u64,
    v6_daddr: [u32; 4],
    v6_rcv_saddr: [u32; 4],
}

unsafe extern "C" {
    /// The kernel's `bpf_sock_destroy` kfunc (Linux 6.5+), only callable
    /// from TCP and UDP iterators, which hold the socket lock. bpf-linker
    /// leaves the call against an undefined symbol; the agent turns it into
    /// a kfunc call before loading (aya 0.14 does not relocate kfuncs).
    fn bpf_sock_destroy(sock: *mut c_void) -> i32;
}

/// The socket of one iterator call and its output, or `None` on the last
/// call.
#[inline(always)]
fn socket(ctx: *mut IterUdp) -> Option<(*mut IterMeta, *mut c_void)> {
    // SAFETY: the kernel passes a valid `bpf_iter__udp`.
    let (meta, sk) = unsafe { ((*ctx).meta, (*ctx).udp_sk) };
    (!sk.is_null()).then_some((meta, sk))
}

/// One word of an IPv6 address of `sk`'s.
///
/// SAFETY: `word` points into the `sock_common` of the iterator's socket.
#[inline(always)]
unsafe fn read_word(word: *const u32) -> u32 {
    // SAFETY: as the caller promises; volatile so each stays one load of
    // its own field, which the verifier checks against the BTF.
    unsafe { ptr::read_volatile(word) }
}

/// An IPv6 address of `sk`'s, four loads.
///
/// SAFETY: `address` is one of the IPv6 addresses of the iterator's socket.
#[inline(always)]
unsafe fn read_address(address: *const [u32; 4]) -> Ipv6Words {
    let first = address.cast::<u32>();
    // SAFETY: four words of the one address.
    unsafe {
        [
            read_word(first),
            read_word(first.add(1)),
            read_word(first.add(2)),
            read_word(first.add(3)),
        ]
    }
}

/// `::ffff:a.b.c.d`: an IPv4 peer of an IPv6 socket.
#[inline(always)]
fn is_v4_mapped(address: &Ipv6Words) -> bool {
    address[0] == 0 && address[1] == 0 && address[2] == 0xffff_u32.to_be()
}

/// Destroys the iterator's socket `sk`: 0, or a negative errno.
#[inline(always)]
fn destroy(sk: *mut c_void) -> i32 {
    // SAFETY: `sk` is the iterator's locked, trusted socket.
    unsafe { bpf_sock_destroy(sk) }
}

/// Writes `record` to the iterator's output. A full output buffer only
/// loses the record (the agent then counts fewer resets than happened).
#[inline(always)]
fn report<R>(meta: *mut IterMeta, record: &R) {
    // SAFETY: `meta` is valid for the call; the record lives on the stack
    // for its duration.
    unsafe {
        bpf_seq_write(
            (*meta).seq,
            ptr::from_ref(record).cast(),
            size_of::<R>() as u32,
        );
    }
}

/// IPv4 sockets, and IPv6 ones connected to an IPv4-mapped address.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/udp")]
pub fn skiff_reset_udp(ctx: *mut IterUdp) -> i32 {
    let Some((meta, sk)) = socket(ctx) else {
        return 0;
    };
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
    let mapped = family == AF_INET6
        // SAFETY: the socket's own peer address.
        && is_v4_mapped(&unsafe { read_address(&raw const (*common).v6_daddr) });
    if !(family == AF_INET || mapped) || daddr == 0 {
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
    let result = destroy(sk);
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
    report(meta, &record);
    0
}

/// IPv6 sockets connected to an IPv6 (not IPv4-mapped) address.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/udp")]
pub fn skiff_reset_udp6(ctx: *mut IterUdp) -> i32 {
    let Some((meta, sk)) = socket(ctx) else {
        return 0;
    };
    let common = sk as *const SockCommon;
    // SAFETY: as in `skiff_reset_udp`.
    let (family, dport, sport) = unsafe {
        (
            ptr::read_volatile(&(*common).family),
            ptr::read_volatile(&(*common).dport),
            ptr::read_volatile(&(*common).num),
        )
    };
    if family != AF_INET6 {
        return 0;
    }
    // SAFETY: the socket's own addresses.
    let (daddr, saddr) = unsafe {
        (
            read_address(&raw const (*common).v6_daddr),
            read_address(&raw const (*common).v6_rcv_saddr),
        )
    };
    if daddr == [0; 4] || is_v4_mapped(&daddr) {
        return 0;
    }
    // SAFETY: `sk` is a socket the helper accepts (BTF-typed sock_common).
    let cookie = unsafe { bpf_get_socket_cookie(sk) };
    let reverse_key = SockRevNatKey6 {
        cookie,
        address: daddr,
        port: dport,
        pad: 0,
        pad2: 0,
    };
    // SAFETY: read and copied.
    let Some(frontend) = (unsafe { SOCK_REV_NAT6.get(&reverse_key) }).copied() else {
        return 0;
    };
    let orphan = OrphanKey6 {
        frontend: ServiceKey6 {
            address: frontend.address,
            port: frontend.port,
            protocol: PROTO_UDP,
            pad: 0,
        },
        backend: Backend6 {
            address: daddr,
            port: dport,
            protocol: PROTO_UDP,
            pad: 0,
        },
    };
    // SAFETY: only checked for presence.
    if unsafe { ORPHANS6.get(&orphan) }.is_none() {
        return 0;
    }
    let result = destroy(sk);
    let _ = SOCK_REV_NAT6.remove(&reverse_key);
    let record = SocketReset6 {
        cookie,
        frontend: orphan.frontend,
        backend: orphan.backend,
        local_address: saddr,
        local_port: sport,
        pad: 0,
        result,
    };
    report(meta, &record);
    0
}
