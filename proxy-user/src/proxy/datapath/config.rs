//! Node-wide settings for the programs.
use std::{fmt, net::Ipv4Addr, str::FromStr};

use proxy_common::DatapathConfig;

/// An IPv4 CIDR holding the cluster's ClusterIPs, e.g. `10.96.0.0/12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl ServiceCidr {
    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// The configuration with this CIDR and nothing else set.
    pub fn datapath_config(self) -> DatapathConfig {
        DatapathConfig {
            service_cidr_address: u32::from(self.network).to_be(),
            service_cidr_mask: self.mask().to_be(),
            maglev_size: 0,
            hash_seed: 0,
            node_address: 0,
            uplink_ifindex: 0,
        }
    }
}

impl FromStr for ServiceCidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (network, prefix_len) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR like 10.96.0.0/12"))?;
        let network: Ipv4Addr = network
            .parse()
            .map_err(|_| format!("{network:?} is not an IPv4 address"))?;
        let prefix_len: u8 = prefix_len
            .parse()
            .ok()
            .filter(|len| (1..=32).contains(len))
            .ok_or_else(|| format!("prefix length {prefix_len:?} is not within 1..=32"))?;
        let cidr = ServiceCidr {
            network,
            prefix_len,
        };
        if u32::from(network) & !cidr.mask() != 0 {
            return Err(format!("{text} has host bits set"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_default_and_masks_in_network_order() {
        let cidr: ServiceCidr = "10.96.0.0/12".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.96.0.0/12");
        let config = cidr.datapath_config();
        // The programs compare raw `user_ip4` values, which hold the
        // address's bytes in network order.
        let inside = u32::from_ne_bytes([10, 111, 255, 1]);
        let outside = u32::from_ne_bytes([10, 112, 0, 1]);
        assert_eq!(
            inside & config.service_cidr_mask,
            config.service_cidr_address
        );
        assert_ne!(
            outside & config.service_cidr_mask,
            config.service_cidr_address
        );
    }

    #[test]
    fn rejects_what_is_not_a_network() {
        for bad in [
            "10.96.0.0",
            "10.96.0.1/12",
            "10.96.0.0/33",
            "10.96.0.0/0",
            "ten/8",
        ] {
            assert!(bad.parse::<ServiceCidr>().is_err(), "{bad} was accepted");
        }
    }
}
