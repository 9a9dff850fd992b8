//! What the `sock_ops` program reports to the agent: how each connect
//! through a frontend with outlier detection ended (passive health).
use crate::{Ipv6Words, ServiceKey, ServiceKey6};

/// Map name of the ring buffer of [`ConnectOutcome`] and
/// [`ConnectOutcome6`] records (told apart by their sizes). Not pinned:
/// only the running agent reads it (a previous agent's program writes into
/// its own buffer until the link is swapped).
pub const CONNECT_OUTCOMES_MAP: &str = "skiff_connects";

/// The ring buffer's size in bytes (a power of two, a multiple of the page
/// size): about 10 000 records (16 bytes each, plus the ring's 8-byte
/// header), room for a burst of connects between two reads of the agent.
pub const CONNECT_OUTCOMES_BYTES: u32 = 256 * 1024;

/// `ConnectOutcome::outcome`: the handshake completed.
pub const CONNECT_ESTABLISHED: u8 = 0;
/// The backend answered the SYN with a reset (nothing listens), or the
/// connect was given up before any retransmission.
pub const CONNECT_REFUSED: u8 = 1;
/// The SYN went unanswered until its first retransmission timeout.
pub const CONNECT_TIMED_OUT: u8 = 2;

/// One connect's outcome: which frontend it was made to, which backend the
/// socket hook chose, how it ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectOutcome {
    /// The frontend (protocol TCP).
    pub frontend: ServiceKey,
    /// Backend IPv4 address, network byte order.
    pub backend_address: u32,
    /// Backend port, network byte order.
    pub backend_port: u16,
    /// `CONNECT_*`.
    pub outcome: u8,
    pub pad: u8,
}

/// One IPv6 connect's outcome (see [`ConnectOutcome`]). An IPv6 socket
/// connected to an IPv4-mapped address reports a [`ConnectOutcome`]: the
/// socket hooks translated it through the IPv4 maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectOutcome6 {
    /// The frontend (protocol TCP).
    pub frontend: ServiceKey6,
    pub backend_address: Ipv6Words,
    /// Backend port, network byte order.
    pub backend_port: u16,
    /// `CONNECT_*`.
    pub outcome: u8,
    pub pad: u8,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]`, integers only, explicit padding.
    unsafe impl aya::Pod for ConnectOutcome {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ConnectOutcome6 {}
}
