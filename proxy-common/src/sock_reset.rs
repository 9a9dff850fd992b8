//! What the agent and the socket-reset iterators exchange: the backends a
//! frontend no longer balances to, and one record per socket reset. Each
//! family has its own iterator program, map and record (an IPv4-mapped
//! IPv6 socket is an IPv4 one here, as the socket hooks keep it).
use crate::{Backend, Backend6, Ipv6Words, ServiceKey, ServiceKey6};

/// Map name of [`OrphanKey`] entries. Not pinned: only the running agent's
/// iterator reads it, and only while the agent runs it.
pub const ORPHANS_MAP: &str = "skiff_orphans";
/// Map name of [`OrphanKey6`] entries, as [`ORPHANS_MAP`].
pub const ORPHANS6_MAP: &str = "skiff_orphans6";

/// How many orphans one iterator run handles; the agent splits larger sets.
pub const ORPHANS_CAPACITY: u32 = 16_384;

/// A backend that `frontend` no longer balances to. A socket connected to
/// `frontend` and translated to `backend` is reset by the iterator, so the
/// application connects again and gets a live backend. The value is unused
/// (`u8`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrphanKey {
    pub frontend: ServiceKey,
    pub backend: Backend,
}

/// One socket the iterator reset, as it writes it to the iterator's output.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketReset {
    pub cookie: u64,
    pub frontend: ServiceKey,
    pub backend: Backend,
    /// The socket's own address, network byte order.
    pub local_address: u32,
    /// The socket's own port, host byte order (as the kernel keeps it).
    pub local_port: u16,
    pub pad: u16,
    /// What `bpf_sock_destroy` returned: 0, or a negative errno.
    pub result: i32,
    pub pad2: u32,
}

/// An IPv6 backend that `frontend` no longer balances to (see
/// [`OrphanKey`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrphanKey6 {
    pub frontend: ServiceKey6,
    pub backend: Backend6,
}

/// One IPv6 socket the IPv6 iterator reset (see [`SocketReset`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketReset6 {
    pub cookie: u64,
    pub frontend: ServiceKey6,
    pub backend: Backend6,
    /// The socket's own address.
    pub local_address: Ipv6Words,
    /// The socket's own port, host byte order (as the kernel keeps it).
    pub local_port: u16,
    pub pad: u16,
    /// What `bpf_sock_destroy` returned: 0, or a negative errno.
    pub result: i32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]`, integers only, explicit padding.
    unsafe impl aya::Pod for OrphanKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SocketReset {}
    // SAFETY: as above.
    unsafe impl aya::Pod for OrphanKey6 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SocketReset6 {}
}
