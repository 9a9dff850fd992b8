//! The strategy of the kinds without rules of their own.

use super::strategy::{Strategy, Subresource};

#[derive(Debug)]
pub struct GenericStrategy {
    subresources: &'static [Subresource],
}

impl GenericStrategy {
    /// Stored as sent, status included (ConfigMaps, Events, Leases, ...).
    pub const PLAIN: Self = Self { subresources: &[] };
}

impl Strategy for GenericStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        self.subresources
    }
}
