//! The ranges allocators hand out from: the trait and port ranges. Address
//! pools of either family are `service_cidrs::IpPool`.

use std::fmt;
use std::ops::RangeInclusive;

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
