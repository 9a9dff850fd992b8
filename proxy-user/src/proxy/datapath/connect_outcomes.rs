//! Reads the ring buffer the `sock_ops` program fills with the outcomes of
//! connects through frontends that ask for outlier detection.
use std::{io, net::SocketAddr};

use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
};
use proxy_common::{
    Backend, Backend6, CONNECT_ESTABLISHED, CONNECT_OUTCOMES_MAP, ConnectOutcome, ConnectOutcome6,
    PROTO_TCP,
};
use tokio::io::{Interest, unix::AsyncFd};

use super::{
    error::DatapathError,
    keys::{BackendKey, FrontendKey},
};

/// How one connect through a frontend with outlier detection ended, of
/// either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObservedConnect {
    pub frontend: FrontendKey,
    pub backend: SocketAddr,
    pub failed: bool,
}

impl From<ConnectOutcome> for ObservedConnect {
    fn from(outcome: ConnectOutcome) -> Self {
        let backend = BackendKey::V4(Backend {
            address: outcome.backend_address,
            port: outcome.backend_port,
            protocol: PROTO_TCP,
            pad: 0,
        });
        Self {
            frontend: FrontendKey::V4(outcome.frontend),
            backend: backend.socket_addr(),
            failed: outcome.outcome != CONNECT_ESTABLISHED,
        }
    }
}

impl From<ConnectOutcome6> for ObservedConnect {
    fn from(outcome: ConnectOutcome6) -> Self {
        let backend = BackendKey::V6(Backend6 {
            address: outcome.backend_address,
            port: outcome.backend_port,
            protocol: PROTO_TCP,
            pad: 0,
        });
        Self {
            frontend: FrontendKey::V6(outcome.frontend),
            backend: backend.socket_addr(),
            failed: outcome.outcome != CONNECT_ESTABLISHED,
        }
    }
}

/// The record `item` holds, told apart by its size (the program writes
/// whole records of either family).
fn decode(item: &[u8]) -> Option<ObservedConnect> {
    // SAFETY: each read is of a whole record of the program's
    // `#[repr(C)]` integer-only type of exactly that size; unaligned-safe.
    unsafe {
        match item.len() {
            len if len == size_of::<ConnectOutcome>() => Some(
                item.as_ptr()
                    .cast::<ConnectOutcome>()
                    .read_unaligned()
                    .into(),
            ),
            len if len == size_of::<ConnectOutcome6>() => Some(
                item.as_ptr()
                    .cast::<ConnectOutcome6>()
                    .read_unaligned()
                    .into(),
            ),
            _ => None,
        }
    }
}

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
    pub async fn read(&mut self, into: &mut Vec<ObservedConnect>) -> io::Result<()> {
        loop {
            let mut guard = self.ring.readable_mut().await?;
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                into.extend(decode(&item));
            }
            guard.clear_ready();
            if !into.is_empty() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proxy_common::{CONNECT_REFUSED, ServiceKey, ServiceKey6, ipv6_words};

    use super::*;

    /// The bytes of a plain integer-only record, as the ring buffer holds it.
    fn bytes<T>(record: &T) -> &[u8] {
        // SAFETY: reading the bytes of a `#[repr(C)]` integer-only struct.
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref(record).cast(), size_of::<T>()) }
    }

    #[test]
    fn records_of_either_family_are_told_apart_by_size() {
        let v4 = ConnectOutcome {
            frontend: ServiceKey {
                address: u32::from_ne_bytes([10, 96, 0, 10]),
                port: 80u16.to_be(),
                protocol: PROTO_TCP,
                pad: 0,
            },
            backend_address: u32::from_ne_bytes([10, 244, 1, 2]),
            backend_port: 8080u16.to_be(),
            outcome: CONNECT_ESTABLISHED,
            pad: 0,
        };
        let words = |text: &str| {
            ipv6_words(
                text.parse::<std::net::Ipv6Addr>()
                    .expect("an address")
                    .octets(),
            )
        };
        let v6 = ConnectOutcome6 {
            frontend: ServiceKey6 {
                address: words("fd00:10:96::a"),
                port: 80u16.to_be(),
                protocol: PROTO_TCP,
                pad: 0,
            },
            backend_address: words("fd00:10:244:1::2"),
            backend_port: 8080u16.to_be(),
            outcome: CONNECT_REFUSED,
            pad: 0,
        };
        let v4_seen = decode(bytes(&v4)).expect("an IPv4 record");
        assert_eq!(v4_seen.frontend, FrontendKey::V4(v4.frontend));
        assert_eq!(v4_seen.backend, "10.244.1.2:8080".parse().unwrap());
        assert!(!v4_seen.failed);
        let v6_seen = decode(bytes(&v6)).expect("an IPv6 record");
        assert_eq!(v6_seen.frontend, FrontendKey::V6(v6.frontend));
        assert_eq!(v6_seen.backend, "[fd00:10:244:1::2]:8080".parse().unwrap());
        assert!(v6_seen.failed);
        assert_eq!(decode(&bytes(&v6)[..20]), None, "a record of no known size");
    }
}
