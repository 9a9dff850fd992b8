//! The ranges allocators hand out from: the trait, IPv4 CIDRs (as the
//! LoadBalancer pool is configured) and port ranges. Address pools of
//! either family are `service_cidrs::IpPool`.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// A range of allocatable items, indexed `0..size()`.
pub trait Pool {
    type Item: Copy + fmt::Display;
    /// How upstream names the item in errors ("IP", "port").
    const WHAT: &'static str;

    fn size(&self) -> u64;
    fn nth(&self, index: u64) -> Self::Item;
    /// Whether `item` may be requested explicitly.
    fn contains(&self, item: Self::Item) -> bool;
    /// Whether random allocation must skip `item` (it may still be
    /// requested explicitly).
    fn is_reserved(&self, item: Self::Item) -> bool;
    /// The range as people configure it, for error messages.
    fn describe(&self) -> String;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 CIDR {0:?}")]
pub struct ParseCidrError(String);

/// An IPv4 network such as `10.96.0.0/12` (host bits are cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, ParseCidrError> {
        if prefix > 32 {
            return Err(ParseCidrError(format!("{addr}/{prefix}")));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseCidrError(s.to_owned());
        let (addr, prefix) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        Self::new(addr, prefix).map_err(|_| err())
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A range of ports, e.g. NodePorts `30000-32767`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortPool {
    range: RangeInclusive<u16>,
}

impl PortPool {
    /// `None` for an empty range.
    pub fn new(range: RangeInclusive<u16>) -> Option<Self> {
        (!range.is_empty()).then_some(Self { range })
    }
}

impl Pool for PortPool {
    type Item = u16;
    const WHAT: &'static str = "port";

    fn size(&self) -> u64 {
        u64::from(self.range.end() - self.range.start()) + 1
    }

    fn nth(&self, index: u64) -> u16 {
        let offset = u16::try_from(index).expect("index below size()");
        self.range.start() + offset
    }

    fn contains(&self, item: u16) -> bool {
        self.range.contains(&item)
    }

    fn is_reserved(&self, _: u16) -> bool {
        false
    }

    fn describe(&self) -> String {
        format!("{}-{}", self.range.start(), self.range.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        let cidr: Ipv4Cidr = "10.96.3.4/12".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/12");
        assert_eq!(
            (cidr.network(), cidr.prefix()),
            (Ipv4Addr::new(10, 96, 0, 0), 12)
        );
        for bad in [
            "10.96.0.0",
            "10.96.0.0/33",
            "10.96.0/12",
            "x/1",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        assert!("0.0.0.0/0".parse::<Ipv4Cidr>().is_ok());
    }

    #[test]
    fn port_pool() {
        let pool = PortPool::new(30000..=32767).unwrap();
        assert_eq!(
            (pool.size(), pool.nth(0), pool.nth(2767)),
            (2768, 30000, 32767)
        );
        assert!(pool.contains(30000) && !pool.contains(32768));
        assert_eq!(pool.describe(), "30000-32767");
        let (lo, hi) = (2, 1);
        assert!(PortPool::new(lo..=hi).is_none());
    }
}
