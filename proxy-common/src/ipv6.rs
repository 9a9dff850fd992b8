//! The IPv6 twins of the datapath's map types. As in Cilium (whose
//! lb6_services, lb6_backends, lb6_reverse_sk and ct6 stand beside the lb4
//! ones), each family has its own frontend, backend, reverse-NAT,
//! frontend-address and conntrack maps; frontend and backend ids come from
//! one space shared by both, so the slots, Maglev, affinity and stats maps
//! serve either family unchanged.
//!
//! An address is four 32-bit words as `bpf_sock_addr.user_ip6` holds it:
//! the address's 16 bytes in network order, read word by word.
use crate::{CtKeyOf, CtValueOf, PROTO_TCP, PROTO_UDP};

/// An IPv6 address as the socket hooks see it.
pub type Ipv6Words = [u32; 4];

/// The bytes of an address held as words.
pub fn ipv6_octets(words: Ipv6Words) -> [u8; 16] {
    let mut octets = [0; 16];
    for (chunk, word) in octets.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    octets
}

/// The words of an address given as bytes.
pub fn ipv6_words(octets: [u8; 16]) -> Ipv6Words {
    let mut words = [0; 4];
    for (word, chunk) in words.iter_mut().zip(octets.chunks_exact(4)) {
        *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    words
}

/// An IPv6 service frontend: a ClusterIP and one of its ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey6 {
    pub address: Ipv6Words,
    /// Port, network byte order.
    pub port: u16,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub protocol: u8,
    pub pad: u8,
}

/// An IPv6 backend: an endpoint address and target port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend6 {
    pub address: Ipv6Words,
    /// Port, network byte order.
    pub port: u16,
    pub protocol: u8,
    pub pad: u8,
}

/// Reverse translation for one IPv6 socket sent to a backend on behalf of
/// a frontend (see `SockRevNatKey`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SockRevNatKey6 {
    pub cookie: u64,
    /// Backend address.
    pub address: Ipv6Words,
    /// Backend port, network byte order.
    pub port: u16,
    pub pad: u16,
    pub pad2: u32,
}

/// The IPv6 frontend a socket's backend traffic is shown as.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockRevNatValue6 {
    pub address: Ipv6Words,
    /// Port, network byte order.
    pub port: u16,
    pub pad: u16,
}

/// The IPv6 service CIDR, the only entry of its own config array (so the
/// IPv4 `DatapathConfig` keeps its layout). A connect into it that matches
/// no frontend is refused at once; an all-zero mask disables the check.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceCidr6 {
    pub address: Ipv6Words,
    pub mask: Ipv6Words,
}

impl ServiceCidr6 {
    pub fn contains(&self, address: &Ipv6Words) -> bool {
        self.mask != [0; 4]
            && (0..4).all(|word| address[word] & self.mask[word] == self.address[word])
    }
}

/// One IPv6 `loadBalancerSourceRanges` entry: the key of the IPv6 source
/// ranges trie, laid out as `SourceRange` (the frontend id, matched whole,
/// then the range's address), so `prefix_len` is 32 plus the range's
/// length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRange6 {
    pub service_id: u32,
    pub address: Ipv6Words,
}

/// An IPv6 packet's flow as the uplink sees it.
pub type CtKey6 = CtKeyOf<Ipv6Words>;

/// How to rewrite every packet of one direction of a NATed IPv6 flow.
pub type CtValue6 = CtValueOf<Ipv6Words>;

fn protocol_name(protocol: u8) -> &'static str {
    match protocol {
        PROTO_TCP => "TCP",
        PROTO_UDP => "UDP",
        _ => "?",
    }
}

/// `[fd00::1]:80/TCP`
impl core::fmt::Display for ServiceKey6 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let address = core::net::Ipv6Addr::from(ipv6_octets(self.address));
        let protocol = protocol_name(self.protocol);
        write!(f, "[{address}]:{}/{protocol}", u16::from_be(self.port))
    }
}

/// `[fd00:10:244:1::2]:8080`
impl core::fmt::Display for Backend6 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let address = core::net::Ipv6Addr::from(ipv6_octets(self.address));
        write!(f, "[{address}]:{}", u16::from_be(self.port))
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `#[repr(C)]`, integers only, explicit padding.
    unsafe impl aya::Pod for ServiceKey6 {}
    unsafe impl aya::Pod for Backend6 {}
    unsafe impl aya::Pod for SockRevNatKey6 {}
    unsafe impl aya::Pod for SockRevNatValue6 {}
    unsafe impl aya::Pod for ServiceCidr6 {}
    unsafe impl aya::Pod for SourceRange6 {}
    unsafe impl aya::Pod for CtKey6 {}
    unsafe impl aya::Pod for CtValue6 {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_octets_round_trip() {
        let octets = [0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a];
        assert_eq!(ipv6_octets(ipv6_words(octets)), octets);
    }

    #[test]
    fn conntrack_types_have_no_implicit_padding() {
        // Every field's size, summed: what the struct must take, so that no
        // uninitialised byte reaches a map key or value.
        assert_eq!(core::mem::size_of::<crate::CtKey>(), 4 + 4 + 2 + 2 + 1 + 3);
        assert_eq!(core::mem::size_of::<CtKey6>(), 16 + 16 + 2 + 2 + 1 + 3);
        assert_eq!(
            core::mem::size_of::<crate::CtValue>(),
            8 + 4 + 4 + 4 + 2 + 2 + 1 + 1 + 2 + 4
        );
        assert_eq!(
            core::mem::size_of::<CtValue6>(),
            8 + 16 + 16 + 4 + 2 + 2 + 1 + 1 + 2 + 4
        );
    }

    #[test]
    fn cidr_contains_only_its_addresses() {
        let network = [0xfd, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mask = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
        ];
        let cidr = ServiceCidr6 {
            address: ipv6_words(network),
            mask: ipv6_words(mask),
        };
        let mut inside = network;
        inside[15] = 7;
        let mut outside = network;
        outside[3] = 0x11;
        assert!(cidr.contains(&ipv6_words(inside)));
        assert!(!cidr.contains(&ipv6_words(outside)));
        assert!(!ServiceCidr6::default().contains(&ipv6_words(inside)));
    }
}
