//! Node-wide settings for the programs.
use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use proxy_common::{DatapathConfig, ServiceCidr6, ipv6_words};

/// The cluster's service CIDRs, as kube-apiserver's
/// `--service-cluster-ip-range` gives them: an IPv4 one, then optionally
/// an IPv6 one (`10.96.0.0/12,fd00:10:96::/112`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidrs {
    pub v4: ServiceCidr,
    pub v6: Option<ServiceCidrV6>,
}

impl FromStr for ServiceCidrs {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(',') {
            None => Ok(Self {
                v4: text.parse()?,
                v6: None,
            }),
            Some((v4, v6)) => Ok(Self {
                v4: v4.parse()?,
                v6: Some(v6.parse()?),
            }),
        }
    }
}

impl fmt::Display for ServiceCidrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.v4)?;
        if let Some(v6) = self.v6 {
            write!(f, ",{v6}")?;
        }
        Ok(())
    }
}

/// An IPv6 CIDR holding the cluster's IPv6 ClusterIPs, e.g.
/// `fd00:10:96::/112`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceCidrV6 {
    network: Ipv6Addr,
    prefix_len: u8,
}

impl ServiceCidrV6 {
    fn mask(self) -> u128 {
        u128::MAX
            .checked_shl(128 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    /// The programs' entry for this CIDR.
    pub fn datapath_config(self) -> ServiceCidr6 {
        ServiceCidr6 {
            address: ipv6_words(self.network.octets()),
            mask: ipv6_words(self.mask().to_be_bytes()),
        }
    }
}

impl FromStr for ServiceCidrV6 {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (network, prefix_len) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR like fd00:10:96::/112"))?;
        let network: Ipv6Addr = network
            .parse()
            .map_err(|_| format!("{network:?} is not an IPv6 address"))?;
        let prefix_len: u8 = prefix_len
            .parse()
            .ok()
            .filter(|len| (1..=128).contains(len))
            .ok_or_else(|| format!("prefix length {prefix_len:?} is not within 1..=128"))?;
        let cidr = ServiceCidrV6 {
            network,
            prefix_len,
        };
        if u128::from(network) & !cidr.mask() != 0 {
            return Err(format!("{text} has host bits set"));
        }
        Ok(cidr)
    }
}

impl fmt::Display for ServiceCidrV6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

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
    fn parses_both_families_and_matches_in_network_order() {
        let cidrs: ServiceCidrs = "10.96.0.0/12,fd00:10:96::/112".parse().unwrap();
        assert_eq!(cidrs.to_string(), "10.96.0.0/12,fd00:10:96::/112");
        let v6 = cidrs.v6.unwrap().datapath_config();
        let inside: Ipv6Addr = "fd00:10:96::ffff".parse().unwrap();
        let outside: Ipv6Addr = "fd00:10:97::1".parse().unwrap();
        assert!(v6.contains(&ipv6_words(inside.octets())));
        assert!(!v6.contains(&ipv6_words(outside.octets())));
        let single: ServiceCidrs = "10.96.0.0/12".parse().unwrap();
        assert_eq!(single.v6, None);
        for bad in [
            "fd00:10:96::/112",
            "10.96.0.0/12,fd00:10:96::1/112",
            "10.96.0.0/12,10.97.0.0/16",
        ] {
            assert!(bad.parse::<ServiceCidrs>().is_err(), "{bad} was accepted");
        }
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
