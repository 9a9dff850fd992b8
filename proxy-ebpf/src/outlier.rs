//! Passive health: how connects through a frontend with outlier detection
//! end, reported to the agent, which ejects backends that keep failing.
//!
//! A `sock_ops` program on the agent's cgroup. Every active TCP connect
//! calls it once (`TCP_CONNECT_CB`); by then `connect4` or `connect6` has
//! rewritten the destination, so the socket's peer is the backend, and its
//! reverse-NAT entry (of the IPv4 or IPv6 map, as the hook wrote it: an
//! IPv6 socket to an IPv4-mapped address is an IPv4 one) names the
//! frontend. Only when that frontend asks for outlier
//! detection does the program turn on the socket's state and RTO
//! callbacks, and it turns them off at the first verdict: a connect costs
//! at most three calls and one ring buffer record, never a per-packet hook.
//!
//! Verdicts: `SYN_SENT -> ESTABLISHED` is a success; `SYN_SENT -> CLOSE`
//! is a refusal (a reset, or a connect given up before any retransmit);
//! the first retransmission timeout in `SYN_SENT` is a timeout (the SYN
//! went unanswered). Retransmissions themselves follow from RTOs, so the
//! retransmit callback would only repeat the RTO's verdict.
use core::ptr;

use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_SOCK_OPS_RTO_CB, BPF_SOCK_OPS_RTO_CB_FLAG, BPF_SOCK_OPS_STATE_CB,
        BPF_SOCK_OPS_STATE_CB_FLAG, BPF_SOCK_OPS_TCP_CONNECT_CB, BPF_TCP_CLOSE,
        BPF_TCP_ESTABLISHED, BPF_TCP_SYN_SENT,
    },
    helpers::bpf_get_socket_cookie,
    macros::sock_ops,
    programs::SockOpsContext,
};
use proxy_common::{
    CONNECT_ESTABLISHED, CONNECT_REFUSED, CONNECT_TIMED_OUT, ConnectOutcome, ConnectOutcome6,
    Ipv6Words, PROTO_TCP, SERVICE_FLAG_OUTLIER_DETECTION, ServiceKey, ServiceKey6, SockRevNatKey,
    SockRevNatKey6,
};

use crate::{
    maps::{CONNECT_OUTCOMES, SOCK_REV_NAT, SOCK_REV_NAT6},
    select::{self, Family as _, V6},
};

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const WATCHED: i32 = (BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTO_CB_FLAG) as i32;

/// sock_ops programs' return value is only read by the few ops that ask
/// for a reply; these do not.
#[sock_ops]
pub fn skiff_sock_ops(ctx: SockOpsContext) -> u32 {
    let family = ctx.family();
    if family != AF_INET && family != AF_INET6 {
        return 1;
    }
    let backend = backend(&ctx, family);
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            if frontend(&ctx, &backend).is_some() {
                let _ = ctx.set_cb_flags(WATCHED);
            }
        }
        BPF_SOCK_OPS_STATE_CB if ctx.arg(0) == BPF_TCP_SYN_SENT => match ctx.arg(1) {
            BPF_TCP_ESTABLISHED => report(&ctx, &backend, CONNECT_ESTABLISHED),
            BPF_TCP_CLOSE => report(&ctx, &backend, CONNECT_REFUSED),
            _ => {}
        },
        BPF_SOCK_OPS_RTO_CB if state(&ctx) == BPF_TCP_SYN_SENT => {
            report(&ctx, &backend, CONNECT_TIMED_OUT)
        }
        _ => {}
    }
    1
}

/// A socket's backend or frontend, either family, as an IPv6 address: an
/// IPv4 one is IPv4-mapped (`::ffff:a.b.c.d`), and keyed by the IPv4 maps,
/// as the socket hooks key it. One plain struct rather than an enum, so
/// that no copy of it reads bytes a variant left unwritten (which the
/// verifier refuses).
struct Peer {
    address: Ipv6Words,
    /// Network byte order.
    port: u16,
}

impl Peer {
    /// The IPv4 address of an IPv4-mapped peer.
    fn ipv4(&self) -> Option<u32> {
        let [a, b, c, d] = self.address;
        (a == 0 && b == 0 && c == 0xffff_u32.to_be()).then_some(d)
    }
}

fn state(ctx: &SockOpsContext) -> u32 {
    // SAFETY: `state` is readable in every sock_ops call.
    unsafe { (*ctx.ops).state }
}

/// The socket's backend (`family` is AF_INET or AF_INET6).
fn backend(ctx: &SockOpsContext, family: u32) -> Peer {
    let ops = ctx.ops;
    // SAFETY: these fields are readable in every sock_ops call. All are
    // read, each by a volatile load at its fixed offset: a choice between
    // two fields would otherwise become one load through a computed
    // context pointer, which the verifier refuses.
    let (remote_ip4, remote_ip6, remote_port) = unsafe {
        (
            ptr::read_volatile(&(*ops).remote_ip4),
            [
                ptr::read_volatile(&(*ops).remote_ip6[0]),
                ptr::read_volatile(&(*ops).remote_ip6[1]),
                ptr::read_volatile(&(*ops).remote_ip6[2]),
                ptr::read_volatile(&(*ops).remote_ip6[3]),
            ],
            ptr::read_volatile(&(*ops).remote_port),
        )
    };
    // `remote_port` holds the port in network byte order in a 32-bit word.
    let port = (u32::from_be(remote_port) as u16).to_be();
    let address = match family {
        AF_INET => [0, 0, 0xffff_u32.to_be(), remote_ip4],
        _ => remote_ip6,
    };
    Peer { address, port }
}

/// The frontend the socket hook translated this socket from, if it asks
/// for outlier detection.
fn frontend(ctx: &SockOpsContext, backend: &Peer) -> Option<Peer> {
    // SAFETY: the context is a socket the helper accepts.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let (address, port) = match backend.ipv4() {
        Some(address) => {
            let key = SockRevNatKey {
                cookie,
                address,
                port: backend.port,
                pad: 0,
            };
            // SAFETY: read and copied.
            let frontend = (unsafe { SOCK_REV_NAT.get(&key) }).copied()?;
            let service = select::service(frontend.address, frontend.port, PROTO_TCP)?;
            if service.flags & SERVICE_FLAG_OUTLIER_DETECTION == 0 {
                return None;
            }
            let mapped = [0, 0, 0xffff_u32.to_be(), frontend.address];
            (mapped, frontend.port)
        }
        None => {
            let key = SockRevNatKey6 {
                cookie,
                address: backend.address,
                port: backend.port,
                pad: 0,
                pad2: 0,
            };
            // SAFETY: read and copied.
            let frontend = (unsafe { SOCK_REV_NAT6.get(&key) }).copied()?;
            let service = V6::service(frontend.address, frontend.port, PROTO_TCP)?;
            if service.flags & SERVICE_FLAG_OUTLIER_DETECTION == 0 {
                return None;
            }
            (frontend.address, frontend.port)
        }
    };
    Some(Peer { address, port })
}

/// Records the verdict and stops watching the socket. A full ring buffer
/// loses the record: the agent then misses one outcome, never acts on a
/// wrong one.
fn report(ctx: &SockOpsContext, backend: &Peer, outcome: u8) {
    let _ = ctx.set_cb_flags(0);
    let Some(frontend) = frontend(ctx, backend) else {
        return;
    };
    match (frontend.ipv4(), backend.ipv4()) {
        (Some(frontend_address), Some(backend_address)) => {
            let record = ConnectOutcome {
                frontend: ServiceKey {
                    address: frontend_address,
                    port: frontend.port,
                    protocol: PROTO_TCP,
                    pad: 0,
                },
                backend_address,
                backend_port: backend.port,
                outcome,
                pad: 0,
            };
            let _ = CONNECT_OUTCOMES.output::<ConnectOutcome>(&record, 0);
        }
        _ => {
            let record = ConnectOutcome6 {
                frontend: ServiceKey6 {
                    address: frontend.address,
                    port: frontend.port,
                    protocol: PROTO_TCP,
                    pad: 0,
                },
                backend_address: backend.address,
                backend_port: backend.port,
                outcome,
                pad: 0,
            };
            let _ = CONNECT_OUTCOMES.output::<ConnectOutcome6>(&record, 0);
        }
    }
}
