//! Passive health: how connects through a frontend with outlier detection
//! end, reported to the agent, which ejects backends that keep failing.
//!
//! A `sock_ops` program on the agent's cgroup. Every active TCP connect
//! calls it once (`TCP_CONNECT_CB`); by then `connect4` has rewritten the
//! destination, so the socket's peer is the backend, and its reverse-NAT
//! entry names the frontend. Only when that frontend asks for outlier
//! detection does the program turn on the socket's state and RTO
//! callbacks, and it turns them off at the first verdict: a connect costs
//! at most three calls and one ring buffer record, never a per-packet hook.
//!
//! Verdicts: `SYN_SENT -> ESTABLISHED` is a success; `SYN_SENT -> CLOSE`
//! is a refusal (a reset, or a connect given up before any retransmit);
//! the first retransmission timeout in `SYN_SENT` is a timeout (the SYN
//! went unanswered). Retransmissions themselves follow from RTOs, so the
//! retransmit callback would only repeat the RTO's verdict.
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
    CONNECT_ESTABLISHED, CONNECT_REFUSED, CONNECT_TIMED_OUT, ConnectOutcome, PROTO_TCP,
    SERVICE_FLAG_OUTLIER_DETECTION, ServiceKey, SockRevNatKey,
};

use crate::{
    maps::{CONNECT_OUTCOMES, SOCK_REV_NAT},
    select,
};

const AF_INET: u32 = 2;
const WATCHED: i32 = (BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_RTO_CB_FLAG) as i32;

/// sock_ops programs' return value is only read by the few ops that ask
/// for a reply; these do not.
#[sock_ops]
pub fn skiff_sock_ops(ctx: SockOpsContext) -> u32 {
    if ctx.family() != AF_INET {
        return 1;
    }
    match ctx.op() {
        BPF_SOCK_OPS_TCP_CONNECT_CB => {
            if frontend(&ctx).is_some() {
                let _ = ctx.set_cb_flags(WATCHED);
            }
        }
        BPF_SOCK_OPS_STATE_CB if ctx.arg(0) == BPF_TCP_SYN_SENT => match ctx.arg(1) {
            BPF_TCP_ESTABLISHED => report(&ctx, CONNECT_ESTABLISHED),
            BPF_TCP_CLOSE => report(&ctx, CONNECT_REFUSED),
            _ => {}
        },
        BPF_SOCK_OPS_RTO_CB if state(&ctx) == BPF_TCP_SYN_SENT => report(&ctx, CONNECT_TIMED_OUT),
        _ => {}
    }
    1
}

fn state(ctx: &SockOpsContext) -> u32 {
    // SAFETY: `state` is readable in every sock_ops call.
    unsafe { (*ctx.ops).state }
}

/// The socket's backend (address, port in network byte order).
fn backend(ctx: &SockOpsContext) -> (u32, u16) {
    // `remote_port` holds the port in network byte order in a 32-bit word.
    (
        ctx.remote_ip4(),
        (u32::from_be(ctx.remote_port()) as u16).to_be(),
    )
}

/// The frontend `connect4` translated this socket from, if it asks for
/// outlier detection.
fn frontend(ctx: &SockOpsContext) -> Option<ServiceKey> {
    let (address, port) = backend(ctx);
    // SAFETY: the context is a socket the helper accepts.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let key = SockRevNatKey {
        cookie,
        address,
        port,
        pad: 0,
    };
    // SAFETY: read and copied.
    let frontend = (unsafe { SOCK_REV_NAT.get(&key) }).copied()?;
    let service = select::service(frontend.address, frontend.port, PROTO_TCP)?;
    (service.flags & SERVICE_FLAG_OUTLIER_DETECTION != 0).then_some(ServiceKey {
        address: frontend.address,
        port: frontend.port,
        protocol: PROTO_TCP,
        pad: 0,
    })
}

/// Records the verdict and stops watching the socket. A full ring buffer
/// loses the record: the agent then misses one outcome, never acts on a
/// wrong one.
fn report(ctx: &SockOpsContext, outcome: u8) {
    let _ = ctx.set_cb_flags(0);
    let Some(frontend) = frontend(ctx) else {
        return;
    };
    let (backend_address, backend_port) = backend(ctx);
    let record = ConnectOutcome {
        frontend,
        backend_address,
        backend_port,
        outcome,
        pad: 0,
    };
    let _ = CONNECT_OUTCOMES.output::<ConnectOutcome>(&record, 0);
}
