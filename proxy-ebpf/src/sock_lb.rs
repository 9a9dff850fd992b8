//! Connect-time load balancing for IPv4 TCP and UDP.
//!
//! `connect4` and `sendmsg4` turn a frontend address into a backend address
//! and remember, per socket cookie, which frontend that backend stands for;
//! `recvmsg4` and `getpeername4` turn the backend back into the frontend, so
//! the application only ever sees the ClusterIP. Addresses the services map
//! does not know (pod IPs, anything else) pass untouched.
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_set_retval},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use proxy_common::{PROTO_TCP, PROTO_UDP, SockRevNatKey, SockRevNatValue, drop_reason};

use crate::{
    counters::{count_drop, count_frontend},
    maps::{CONFIG, SOCK_REV_NAT},
    select::{self, connect_backend},
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
    to_backend(&ctx, Hook::Connect)
}

/// Unconnected UDP sends (connected ones went through connect4).
#[cgroup_sock_addr(sendmsg4)]
pub fn skiff_sendmsg4(ctx: SockAddrContext) -> i32 {
    to_backend(&ctx, Hook::Send)
}

/// The source address a UDP reply is reported with.
#[cgroup_sock_addr(recvmsg4)]
pub fn skiff_recvmsg4(ctx: SockAddrContext) -> i32 {
    to_frontend(&ctx);
    PROCEED
}

#[cgroup_sock_addr(getpeername4)]
pub fn skiff_getpeername4(ctx: SockAddrContext) -> i32 {
    to_frontend(&ctx);
    PROCEED
}

#[inline(always)]
fn balanced_protocol(protocol: u32) -> Option<u8> {
    match protocol as u8 {
        PROTO_TCP => Some(PROTO_TCP),
        PROTO_UDP => Some(PROTO_UDP),
        _ => None,
    }
}

#[inline(always)]
fn in_service_cidr(address: u32) -> bool {
    match CONFIG.get(0) {
        Some(config) => {
            config.service_cidr_mask != 0
                && address & config.service_cidr_mask == config.service_cidr_address
        }
        None => false,
    }
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
fn to_backend(ctx: &SockAddrContext, hook: Hook) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: the kernel hands every sock_addr program a valid context;
    // these fields are readable (4 bytes) for connect4 and sendmsg4.
    let (address, port, protocol) = unsafe { ((*sa).user_ip4, (*sa).user_port, (*sa).protocol) };
    let Some(protocol) = balanced_protocol(protocol) else {
        return PROCEED;
    };
    // user_port holds the port in network byte order in its low 16 bits.
    let port = port as u16;
    let Some(service) = select::service(address, port, protocol) else {
        // A ClusterIP (or port) that no service has: fail now, as
        // kube-proxy's nftables mode does, rather than let the connect hang
        // on an address nothing answers.
        if in_service_cidr(address) {
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
    let Some(backend) = select::backend(backend_id) else {
        return refuse_for(service.id, drop_reason::NO_BACKEND);
    };

    // SAFETY: the context is a socket-bearing sock_addr context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let reverse_key = SockRevNatKey {
        cookie,
        address: backend.address,
        port: backend.port,
        pad: 0,
    };
    let frontend = SockRevNatValue {
        address,
        port,
        pad: 0,
    };
    // An LRU insert only fails on memory pressure; the connect still works,
    // the application would just see the backend's address.
    let _ = SOCK_REV_NAT.insert(&reverse_key, &frontend, 0);

    // SAFETY: user_ip4 and user_port are writable (4 bytes) here.
    unsafe {
        (*sa).user_ip4 = backend.address;
        (*sa).user_port = u32::from(backend.port);
    }
    count_frontend(service.id, |stats| match hook {
        Hook::Connect => stats.connects += 1,
        Hook::Send => stats.udp_sends += 1,
    });
    PROCEED
}

#[inline(always)]
fn to_frontend(ctx: &SockAddrContext) {
    let sa = ctx.sock_addr;
    // SAFETY: readable for recvmsg4 and getpeername4.
    let (address, port, protocol) = unsafe { ((*sa).user_ip4, (*sa).user_port, (*sa).protocol) };
    let Some(protocol) = balanced_protocol(protocol) else {
        return;
    };
    // SAFETY: the context is a socket-bearing sock_addr context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let key = SockRevNatKey {
        cookie,
        address,
        port: port as u16,
        pad: 0,
    };
    // SAFETY: read and copied.
    let Some(frontend) = (unsafe { SOCK_REV_NAT.get(&key) }).copied() else {
        return;
    };
    // Once the service is gone its backends speak for themselves again.
    if select::service(frontend.address, frontend.port, protocol).is_none() {
        return;
    }
    // SAFETY: user_ip4 and user_port are writable (4 bytes) here.
    unsafe {
        (*sa).user_ip4 = frontend.address;
        (*sa).user_port = u32::from(frontend.port);
    }
}
