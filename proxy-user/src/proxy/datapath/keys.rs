//! Frontends and backends of either address family, as the agent keys
//! them: each family has its own frontend and backend maps in the kernel
//! (`skiff_services`/`skiff_services6`, `skiff_backends`/`skiff_backends6`),
//! frontend addresses and source ranges, and everything else (ids, slots,
//! Maglev tables, counters) is shared, so the mirror and its writes are the
//! same code for both.
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use proxy_common::{
    Backend, Backend6, Ipv6Words, ServiceKey, ServiceKey6, SourceRange, SourceRange6, ipv6_octets,
    ipv6_words,
};

/// A frontend: address, port and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrontendKey {
    V4(ServiceKey),
    V6(ServiceKey6),
}

/// A frontend's address, as its family's frontend addresses map
/// (`skiff_fe_addrs`, `skiff_fe_addrs6`) holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FrontendAddress {
    V4(u32),
    V6(Ipv6Words),
}

/// A source range entry, as its family's trie (`skiff_src_ranges`,
/// `skiff_src_rng6`) holds it: the frontend id and the network, with the
/// entry's prefix length (32 for the id, plus the network's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceRangeKey {
    V4(SourceRange, u32),
    V6(SourceRange6, u32),
}

impl SourceRangeKey {
    pub fn service_id(&self) -> u32 {
        match self {
            Self::V4(range, _) => range.service_id,
            Self::V6(range, _) => range.service_id,
        }
    }
}

/// A backend: endpoint address, target port and protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKey {
    V4(Backend),
    V6(Backend6),
}

impl FrontendKey {
    /// `port` and `protocol` as the maps hold them: network byte order, IP
    /// protocol number.
    pub fn new(ip: IpAddr, port: u16, protocol: u8) -> Self {
        match ip {
            IpAddr::V4(ip) => Self::V4(ServiceKey {
                address: u32::from_ne_bytes(ip.octets()),
                port,
                protocol,
                pad: 0,
            }),
            IpAddr::V6(ip) => Self::V6(ServiceKey6 {
                address: ipv6_words(ip.octets()),
                port,
                protocol,
                pad: 0,
            }),
        }
    }

    /// The address as its family's frontend addresses map holds it.
    pub fn address(&self) -> FrontendAddress {
        match self {
            Self::V4(key) => FrontendAddress::V4(key.address),
            Self::V6(key) => FrontendAddress::V6(key.address),
        }
    }

    pub fn protocol(&self) -> u8 {
        match self {
            Self::V4(key) => key.protocol,
            Self::V6(key) => key.protocol,
        }
    }

    /// Address, then port in host order, then protocol: how `status` and
    /// `/metrics` list frontends (IPv4 first).
    pub fn sort_key(&self) -> (IpAddr, u16, u8) {
        match self {
            Self::V4(key) => (
                IpAddr::V4(Ipv4Addr::from(key.address.to_ne_bytes())),
                u16::from_be(key.port),
                key.protocol,
            ),
            Self::V6(key) => (
                IpAddr::V6(Ipv6Addr::from(ipv6_octets(key.address))),
                u16::from_be(key.port),
                key.protocol,
            ),
        }
    }
}

impl BackendKey {
    /// `port` in network byte order.
    pub fn new(ip: IpAddr, port: u16, protocol: u8) -> Self {
        match ip {
            IpAddr::V4(ip) => Self::V4(Backend {
                address: u32::from_ne_bytes(ip.octets()),
                port,
                protocol,
                pad: 0,
            }),
            IpAddr::V6(ip) => Self::V6(Backend6 {
                address: ipv6_words(ip.octets()),
                port,
                protocol,
                pad: 0,
            }),
        }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        match self {
            Self::V4(backend) => SocketAddr::from((
                Ipv4Addr::from(backend.address.to_ne_bytes()),
                u16::from_be(backend.port),
            )),
            Self::V6(backend) => SocketAddr::from((
                Ipv6Addr::from(ipv6_octets(backend.address)),
                u16::from_be(backend.port),
            )),
        }
    }

    /// The bytes that identify the backend on every node (the Maglev
    /// tables hash them): address, port, protocol.
    pub fn identity(&self) -> Vec<u8> {
        let (address, port, protocol) = match self {
            Self::V4(backend) => (
                backend.address.to_ne_bytes().to_vec(),
                backend.port,
                backend.protocol,
            ),
            Self::V6(backend) => (
                ipv6_octets(backend.address).to_vec(),
                backend.port,
                backend.protocol,
            ),
        };
        let mut bytes = address;
        bytes.extend_from_slice(&port.to_ne_bytes());
        bytes.push(protocol);
        bytes
    }
}

impl From<ServiceKey> for FrontendKey {
    fn from(key: ServiceKey) -> Self {
        Self::V4(key)
    }
}

impl From<Backend> for BackendKey {
    fn from(backend: Backend) -> Self {
        Self::V4(backend)
    }
}

/// `10.96.0.10:80/TCP`, `[fd00:10:96::a]:80/TCP`
impl fmt::Display for FrontendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(key) => key.fmt(f),
            Self::V6(key) => key.fmt(f),
        }
    }
}

/// `10.244.1.2:8080`, `[fd00:10:244:1::2]:8080`
impl fmt::Display for BackendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(backend) => backend.fmt(f),
            Self::V6(backend) => backend.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use proxy_common::PROTO_TCP;

    use super::*;

    #[test]
    fn ipv6_frontends_and_backends_are_named_with_brackets() {
        let frontend = FrontendKey::new("fd00:10:96::a".parse().unwrap(), 80u16.to_be(), PROTO_TCP);
        assert_eq!(frontend.to_string(), "[fd00:10:96::a]:80/TCP");
        assert_eq!(
            frontend.address(),
            FrontendAddress::V6(ipv6_words(
                "fd00:10:96::a".parse::<Ipv6Addr>().unwrap().octets()
            ))
        );
        let backend = BackendKey::new(
            "fd00:10:244:1::2".parse().unwrap(),
            8080u16.to_be(),
            PROTO_TCP,
        );
        assert_eq!(backend.to_string(), "[fd00:10:244:1::2]:8080");
        assert_eq!(
            backend.socket_addr(),
            "[fd00:10:244:1::2]:8080".parse().unwrap()
        );
        let v4 = FrontendKey::new("10.96.0.10".parse().unwrap(), 80u16.to_be(), PROTO_TCP);
        assert_eq!(v4.to_string(), "10.96.0.10:80/TCP");
        assert_eq!(
            v4.address(),
            FrontendAddress::V4(u32::from_ne_bytes([10, 96, 0, 10]))
        );
    }
}
