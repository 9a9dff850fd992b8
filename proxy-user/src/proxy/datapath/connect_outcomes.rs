//! Reads the ring buffer the `sock_ops` program fills with the outcomes of
//! connects through frontends that ask for outlier detection.
use std::io;

use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
};
use proxy_common::{CONNECT_OUTCOMES_MAP, ConnectOutcome};
use tokio::io::{Interest, unix::AsyncFd};

use super::error::DatapathError;

pub struct ConnectOutcomes {
    ring: AsyncFd<RingBuf<MapData>>,
}

impl ConnectOutcomes {
    /// Takes the ring buffer out of the loaded object. Needs a Tokio
    /// runtime (the buffer's fd is registered with it).
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        let map = ebpf
            .take_map(CONNECT_OUTCOMES_MAP)
            .ok_or(DatapathError::MissingMap(CONNECT_OUTCOMES_MAP))?;
        let ring = RingBuf::try_from(map).map_err(|cause| DatapathError::Map {
            name: CONNECT_OUTCOMES_MAP,
            cause,
        })?;
        // SAFETY: the ring buffer owns its map's fd, open and unchanged
        // until the ring buffer, owned here, is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(
            |error| DatapathError::Io {
                path: CONNECT_OUTCOMES_MAP.into(),
                cause: error.into_parts().1,
            },
        )?;
        Ok(Self { ring })
    }

    /// Waits until the buffer holds records, then moves them all into
    /// `into`. Cancel-safe: records stay in the buffer until read here.
    pub async fn read(&mut self, into: &mut Vec<ConnectOutcome>) -> io::Result<()> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                if item.len() >= size_of::<ConnectOutcome>() {
                    // SAFETY: the program writes whole `ConnectOutcome`s; the
                    // read is unaligned-safe.
                    into.push(unsafe { item.as_ptr().cast::<ConnectOutcome>().read_unaligned() });
                }
            }
            guard.clear_ready();
            if !into.is_empty() {
                return Ok(());
            }
        }
    }
}
