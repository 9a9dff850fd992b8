//! What the agent and the socket-reset iterator exchange: the backends a
//! frontend no longer balances to, and one record per socket reset.
use crate::{Backend, ServiceKey};

/// Map name of [`OrphanKey`] entries. Not pinned: only the running agent's
/// iterator reads it, and only while the agent runs it.
pub const ORPHANS_MAP: &str = "skiff_orphans";

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

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]`, integers only, explicit padding.
    unsafe impl aya::Pod for OrphanKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SocketReset {}
}
