//! Connect-time load balancing for TCP and UDP, IPv4 and IPv6.
//!
//! `connect4`/`connect6` and `sendmsg4`/`sendmsg6` turn a frontend address
//! into a backend address and remember, per socket cookie, which frontend
//! that backend stands for; `recvmsg*` and `getpeername*` turn the backend
//! back into the frontend, so the application only ever sees the ClusterIP.
//! Addresses the services maps do not know (pod IPs, anything else) pass
//! untouched.
//!
//! One code path serves every family (`SockFamily`): IPv4 sockets, IPv6
//! sockets, and IPv6 sockets reaching an IPv4 ClusterIP through its
//! IPv4-mapped address (`::ffff:10.96.0.10`), which, as in Cilium, goes
//! through the IPv4 maps and stays mapped in the socket's address.
use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::{
    EbpfContext,
    bindings::bpf_sock_addr,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use proxy_common::{
    BackendId, Ipv6Words, PROTO_TCP, PROTO_UDP, ServiceValue, SockRevNatKey, SockRevNatKey6,
    SockRevNatValue, SockRevNatValue6, drop_reason,
};

use crate::{
    counters::{count_drop, count_frontend},
    maps::{CONFIG, CONFIG6, SOCK_REV_NAT, SOCK_REV_NAT6},
    select::{Family, V4, V6, connect_backend},
};

/// sock_addr programs return 1 to let the call proceed, 0 to fail it.
const PROCEED: i32 = 1;
const FAIL: i32 = 0;
const ECONNREFUSED: i32 = 111;

/// Which hook a translation runs in, for the counters.
#[derive(Clone, Copy)]
enum Hook {
    Connect,
    Send,
}

#[cgroup_sock_addr(connect4)]
pub fn skiff_connect4(ctx: SockAddrContext) -> i32 {
    to_backend::<V4>(&ctx, Hook::Connect)
}

/// Unconnected UDP sends (connected ones went through connect4).
#[cgroup_sock_addr(sendmsg4)]
pub fn skiff_sendmsg4(ctx: SockAddrContext) -> i32 {
    to_backend::<V4>(&ctx, Hook::Send)
}

/// The source address a UDP reply is reported with.
#[cgroup_sock_addr(recvmsg4)]
pub fn skiff_recvmsg4(ctx: SockAddrContext) -> i32 {
    to_frontend::<V4>(&ctx);
    PROCEED
}

#[cgroup_sock_addr(getpeername4)]
pub fn skiff_getpeername4(ctx: SockAddrContext) -> i32 {
    to_frontend::<V4>(&ctx);
    PROCEED
}

#[cgroup_sock_addr(connect6)]
pub fn skiff_connect6(ctx: SockAddrContext) -> i32 {
    match is_v4_mapped(&ctx) {
        true => to_backend::<V4Mapped>(&ctx, Hook::Connect),
        false => to_backend::<V6>(&ctx, Hook::Connect),
    }
}

#[cgroup_sock_addr(sendmsg6)]
pub fn skiff_sendmsg6(ctx: SockAddrContext) -> i32 {
    match is_v4_mapped(&ctx) {
        true => to_backend::<V4Mapped>(&ctx, Hook::Send),
        false => to_backend::<V6>(&ctx, Hook::Send),
    }
}

#[cgroup_sock_addr(recvmsg6)]
pub fn skiff_recvmsg6(ctx: SockAddrContext) -> i32 {
    match is_v4_mapped(&ctx) {
        true => to_frontend::<V4Mapped>(&ctx),
        false => to_frontend::<V6>(&ctx),
    }
    PROCEED
}

#[cgroup_sock_addr(getpeername6)]
pub fn skiff_getpeername6(ctx: SockAddrContext) -> i32 {
    match is_v4_mapped(&ctx) {
        true => to_frontend::<V4Mapped>(&ctx),
        false => to_frontend::<V6>(&ctx),
    }
    PROCEED
}

/// How one kind of socket address is translated: where the address sits
/// in the hook's context, the frontend and backend maps (`Family`), the
/// service CIDR and the reverse-NAT map.
trait SockFamily: Family {
    /// The context's address.
    ///
    /// # Safety
    /// `sa` is the context of a hook of this family.
    unsafe fn read(sa: *const bpf_sock_addr) -> Self::Address;
    /// # Safety
    /// `sa` is the context of a hook of this family that may rewrite it.
    unsafe fn write(sa: *mut bpf_sock_addr, address: Self::Address);
    fn in_service_cidr(address: &Self::Address) -> bool;
    /// Remembers that the socket `cookie` sent to `backend` stands for
    /// `frontend` (addresses with ports in network byte order).
    fn remember(cookie: u64, backend: (Self::Address, u16), frontend: (Self::Address, u16));
    /// The frontend the socket's `backend` stands for.
    fn recall(cookie: u64, backend: (Self::Address, u16)) -> Option<(Self::Address, u16)>;
}

impl SockFamily for V4 {
    #[inline(always)]
    unsafe fn read(sa: *const bpf_sock_addr) -> u32 {
        // SAFETY: user_ip4 is readable (4 bytes) in the IPv4 hooks.
        unsafe { (*sa).user_ip4 }
    }

    #[inline(always)]
    unsafe fn write(sa: *mut bpf_sock_addr, address: u32) {
        // SAFETY: user_ip4 is writable (4 bytes) in connect4 and sendmsg4,
        // recvmsg4 and getpeername4.
        unsafe { (*sa).user_ip4 = address }
    }

    #[inline(always)]
    fn in_service_cidr(address: &u32) -> bool {
        CONFIG.get(0).is_some_and(|config| {
            config.service_cidr_mask != 0
                && address & config.service_cidr_mask == config.service_cidr_address
        })
    }

    #[inline(always)]
    fn remember(cookie: u64, backend: (u32, u16), frontend: (u32, u16)) {
        let key = SockRevNatKey {
            cookie,
            address: backend.0,
            port: backend.1,
            pad: 0,
        };
        let value = SockRevNatValue {
            address: frontend.0,
            port: frontend.1,
            pad: 0,
        };
        // An LRU insert only fails on memory pressure; the connect still
        // works, the application would just see the backend's address.
        let _ = SOCK_REV_NAT.insert(&key, &value, 0);
    }

    #[inline(always)]
    fn recall(cookie: u64, backend: (u32, u16)) -> Option<(u32, u16)> {
        let key = SockRevNatKey {
            cookie,
            address: backend.0,
            port: backend.1,
            pad: 0,
        };
        // SAFETY: read and copied.
        let value = (unsafe { SOCK_REV_NAT.get(&key) }).copied()?;
        Some((value.address, value.port))
    }
}

impl SockFamily for V6 {
    #[inline(always)]
    unsafe fn read(sa: *const bpf_sock_addr) -> Ipv6Words {
        // SAFETY: user_ip6 is readable, word by word, in the IPv6 hooks.
        unsafe { read_ip6(sa) }
    }

    #[inline(always)]
    unsafe fn write(sa: *mut bpf_sock_addr, address: Ipv6Words) {
        // SAFETY: user_ip6 is writable, word by word, in the IPv6 hooks;
        // each word is one store at a constant offset from the context
        // (the verifier refuses a store through a pointer moved into it).
        unsafe {
            write_volatile(&raw mut (*sa).user_ip6[0], address[0]);
            write_volatile(&raw mut (*sa).user_ip6[1], address[1]);
            write_volatile(&raw mut (*sa).user_ip6[2], address[2]);
            write_volatile(&raw mut (*sa).user_ip6[3], address[3]);
        }
    }

    #[inline(always)]
    fn in_service_cidr(address: &Ipv6Words) -> bool {
        CONFIG6.get(0).is_some_and(|cidr| cidr.contains(address))
    }

    #[inline(always)]
    fn remember(cookie: u64, backend: (Ipv6Words, u16), frontend: (Ipv6Words, u16)) {
        let key = SockRevNatKey6 {
            cookie,
            address: backend.0,
            port: backend.1,
            pad: 0,
            pad2: 0,
        };
        let value = SockRevNatValue6 {
            address: frontend.0,
            port: frontend.1,
            pad: 0,
        };
        // As for IPv4: a failed LRU insert only shows the backend.
        let _ = SOCK_REV_NAT6.insert(&key, &value, 0);
    }

    #[inline(always)]
    fn recall(cookie: u64, backend: (Ipv6Words, u16)) -> Option<(Ipv6Words, u16)> {
        let key = SockRevNatKey6 {
            cookie,
            address: backend.0,
            port: backend.1,
            pad: 0,
            pad2: 0,
        };
        // SAFETY: read and copied.
        let value = (unsafe { SOCK_REV_NAT6.get(&key) }).copied()?;
        Some((value.address, value.port))
    }
}

/// An IPv6 socket's IPv4-mapped address (`::ffff:a.b.c.d`): the IPv4 maps,
/// with the IPv4 address in the last word of `user_ip6`, whose first three
/// words stay the mapped prefix.
struct V4Mapped;

/// The third word of an IPv4-mapped address, as `user_ip6` holds it.
const V4_MAPPED_PREFIX: u32 = 0x0000_ffff_u32.to_be();

/// The context's `user_ip6`, each word one load at a constant offset from
/// the context: the verifier refuses a load through a pointer moved into
/// it, which copying the array whole compiles to.
///
/// # Safety
/// `sa` is the context of an IPv6 hook.
#[inline(always)]
unsafe fn read_ip6(sa: *const bpf_sock_addr) -> Ipv6Words {
    // SAFETY: user_ip6's words are readable in the IPv6 hooks.
    unsafe {
        [
            read_volatile(&raw const (*sa).user_ip6[0]),
            read_volatile(&raw const (*sa).user_ip6[1]),
            read_volatile(&raw const (*sa).user_ip6[2]),
            read_volatile(&raw const (*sa).user_ip6[3]),
        ]
    }
}

#[inline(always)]
fn is_v4_mapped(ctx: &SockAddrContext) -> bool {
    // SAFETY: only the IPv6 hooks ask.
    let words = unsafe { read_ip6(ctx.sock_addr) };
    words[0] == 0 && words[1] == 0 && words[2] == V4_MAPPED_PREFIX
}

impl Family for V4Mapped {
    type Address = u32;

    #[inline(always)]
    fn service(address: u32, port: u16, protocol: u8) -> Option<ServiceValue> {
        V4::service(address, port, protocol)
    }

    #[inline(always)]
    fn backend(id: BackendId) -> Option<(u32, u16)> {
        V4::backend(id)
    }
}

impl SockFamily for V4Mapped {
    #[inline(always)]
    unsafe fn read(sa: *const bpf_sock_addr) -> u32 {
        // SAFETY: user_ip6's words are readable in the IPv6 hooks.
        unsafe { read_volatile(&raw const (*sa).user_ip6[3]) }
    }

    #[inline(always)]
    unsafe fn write(sa: *mut bpf_sock_addr, address: u32) {
        // SAFETY: user_ip6's words are writable in the IPv6 hooks.
        unsafe { write_volatile(&raw mut (*sa).user_ip6[3], address) }
    }

    #[inline(always)]
    fn in_service_cidr(address: &u32) -> bool {
        V4::in_service_cidr(address)
    }

    #[inline(always)]
    fn remember(cookie: u64, backend: (u32, u16), frontend: (u32, u16)) {
        V4::remember(cookie, backend, frontend)
    }

    #[inline(always)]
    fn recall(cookie: u64, backend: (u32, u16)) -> Option<(u32, u16)> {
        V4::recall(cookie, backend)
    }
}

#[inline(always)]
fn balanced_protocol(protocol: u32) -> Option<u8> {
    match protocol as u8 {
        PROTO_TCP => Some(PROTO_TCP),
        PROTO_UDP => Some(PROTO_UDP),
        _ => None,
    }
}

/// The context's protocol and port (network byte order, which `user_port`
/// holds in its low 16 bits).
#[inline(always)]
fn port_and_protocol(ctx: &SockAddrContext) -> Option<(u16, u8)> {
    let sa = ctx.sock_addr;
    // SAFETY: the kernel hands every sock_addr program a valid context;
    // these fields are readable (4 bytes) in every hook.
    let (port, protocol) = unsafe { ((*sa).user_port, (*sa).protocol) };
    Some((port as u16, balanced_protocol(protocol)?))
}

/// Fails the call with ECONNREFUSED: the service has nothing to send to, or
/// does not exist, and the client must learn that at once, not after a
/// timeout.
#[inline(always)]
fn refuse() -> i32 {
    // SAFETY: a helper call with a plain integer argument.
    unsafe { bpf_set_retval(-ECONNREFUSED) };
    FAIL
}

/// Refuses a connect or send to a frontend, counting why.
#[inline(always)]
fn refuse_for(service_id: u32, reason: u32) -> i32 {
    count_drop(reason);
    count_frontend(service_id, |stats| stats.refused += 1);
    refuse()
}

#[inline(always)]
fn to_backend<F: SockFamily>(ctx: &SockAddrContext, hook: Hook) -> i32 {
    let Some((port, protocol)) = port_and_protocol(ctx) else {
        return PROCEED;
    };
    // SAFETY: the caller runs `F`'s hooks.
    let address = unsafe { F::read(ctx.sock_addr) };
    let Some(service) = F::service(address, port, protocol) else {
        // A ClusterIP (or port) that no service has: fail now, as
        // kube-proxy's nftables mode does, rather than let the connect hang
        // on an address nothing answers.
        if F::in_service_cidr(&address) {
            count_drop(drop_reason::UNKNOWN_SERVICE);
            return refuse();
        }
        return PROCEED;
    };
    if service.backend_count == 0 {
        return refuse_for(service.id, drop_reason::NO_ENDPOINTS);
    }
    // The client of an affinity frontend is the socket's network namespace
    // (its source address is not chosen yet).
    let client = || {
        // SAFETY: the context is a sock_addr context, whose netns the
        // helper reads.
        unsafe { bpf_get_netns_cookie(ctx.as_ptr()) }
    };
    let Some(backend_id) = connect_backend(&service, client) else {
        return refuse_for(service.id, drop_reason::NO_BACKEND);
    };
    let Some(backend) = F::backend(backend_id) else {
        return refuse_for(service.id, drop_reason::NO_BACKEND);
    };

    // SAFETY: the context is a socket-bearing sock_addr context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    F::remember(cookie, backend, (address, port));
    // SAFETY: the caller runs `F`'s connect or sendmsg hook; user_port is
    // writable (4 bytes) there.
    unsafe {
        F::write(ctx.sock_addr, backend.0);
        (*ctx.sock_addr).user_port = u32::from(backend.1);
    }
    count_frontend(service.id, |stats| match hook {
        Hook::Connect => stats.connects += 1,
        Hook::Send => stats.udp_sends += 1,
    });
    PROCEED
}

#[inline(always)]
fn to_frontend<F: SockFamily>(ctx: &SockAddrContext) {
    let Some((port, protocol)) = port_and_protocol(ctx) else {
        return;
    };
    // SAFETY: the caller runs `F`'s hooks.
    let address = unsafe { F::read(ctx.sock_addr) };
    // SAFETY: the context is a socket-bearing sock_addr context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(frontend) = F::recall(cookie, (address, port)) else {
        return;
    };
    // Once the service is gone its backends speak for themselves again.
    if F::service(frontend.0, frontend.1, protocol).is_none() {
        return;
    }
    // SAFETY: the caller runs `F`'s recvmsg or getpeername hook, where the
    // address and user_port are writable.
    unsafe {
        F::write(ctx.sock_addr, frontend.0);
        (*ctx.sock_addr).user_port = u32::from(frontend.1);
    }
}
