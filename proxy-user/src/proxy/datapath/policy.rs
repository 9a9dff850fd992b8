//! How a frontend's policy (`proxy::policy`) reads in its map entry.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proxy_common::{
    SERVICE_FLAG_AFFINITY, SERVICE_FLAG_EXTERNAL, SERVICE_FLAG_LOCAL_ONLY,
    SERVICE_FLAG_OUTLIER_DETECTION, SERVICE_FLAG_SOURCE_RANGES, ServiceValue, SourceRange,
    SourceRange6, ipv6_octets, ipv6_words,
};

use super::keys::SourceRangeKey;
use crate::proxy::policy::{Policy, SourceCidr};

impl SourceCidr {
    /// The trie entry admitting this network to frontend `service_id`, in
    /// the trie of the network's family.
    pub fn entry(self, service_id: u32) -> SourceRangeKey {
        let prefix_len = 32 + u32::from(self.prefix_len);
        match self.network {
            IpAddr::V4(network) => SourceRangeKey::V4(
                SourceRange {
                    service_id,
                    address: u32::from_ne_bytes(network.octets()),
                },
                prefix_len,
            ),
            IpAddr::V6(network) => SourceRangeKey::V6(
                SourceRange6 {
                    service_id,
                    address: ipv6_words(network.octets()),
                },
                prefix_len,
            ),
        }
    }

    /// The network a trie entry admits.
    pub fn of_entry(entry: &SourceRangeKey) -> Self {
        let (network, prefix_len) = match entry {
            SourceRangeKey::V4(range, prefix_len) => (
                IpAddr::V4(Ipv4Addr::from(range.address.to_ne_bytes())),
                prefix_len,
            ),
            SourceRangeKey::V6(range, prefix_len) => (
                IpAddr::V6(Ipv6Addr::from(ipv6_octets(range.address))),
                prefix_len,
            ),
        };
        Self {
            network,
            prefix_len: prefix_len.saturating_sub(32) as u8,
        }
    }
}

impl Policy {
    /// The frontend entry for frontend `id` with `backend_count` backends.
    pub fn service_value(&self, id: u32, backend_count: usize) -> ServiceValue {
        let mut flags = 0;
        for (set, flag) in [
            (self.affinity_timeout.is_some(), SERVICE_FLAG_AFFINITY),
            (self.external, SERVICE_FLAG_EXTERNAL),
            (self.local_only, SERVICE_FLAG_LOCAL_ONLY),
            (!self.source_ranges.is_empty(), SERVICE_FLAG_SOURCE_RANGES),
            (self.outlier_detection, SERVICE_FLAG_OUTLIER_DETECTION),
        ] {
            if set {
                flags |= flag;
            }
        }
        ServiceValue {
            id,
            backend_count: backend_count as u32,
            flags,
            affinity_timeout: self.affinity_timeout.unwrap_or(0),
        }
    }

    /// The policy a pinned frontend entry holds, with the source ranges
    /// found for it.
    pub fn of_value(value: &ServiceValue, source_ranges: Vec<SourceCidr>) -> Self {
        Self {
            affinity_timeout: (value.flags & SERVICE_FLAG_AFFINITY != 0)
                .then_some(value.affinity_timeout),
            external: value.flags & SERVICE_FLAG_EXTERNAL != 0,
            local_only: value.flags & SERVICE_FLAG_LOCAL_ONLY != 0,
            source_ranges,
            outlier_detection: value.flags & SERVICE_FLAG_OUTLIER_DETECTION != 0,
        }
    }
}
