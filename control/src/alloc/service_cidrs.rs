//! The service ClusterIP ranges of either family (kube-apiserver's
//! `--service-cluster-ip-range=v4[,v6]`), the LoadBalancer pools of either
//! family, and the pool of addresses each range hands out.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

use super::pool::Pool;

/// kube-apiserver keeps at most 2^20 addresses per range (its allocators
/// are bitmaps stored in etcd); a larger range is refused at start.
const MAX_RANGE_BITS: u8 = 20;
/// kube-apiserver's IPv6 allocator uses at most the first 2^16 addresses of
/// its range, whatever the prefix length.
const MAX_IPV6_ADDRESSES: u128 = 1 << 16;

/// An IP family, as Services name it in `spec.ipFamilies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    Ipv4,
    Ipv6,
}

impl IpFamily {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::Ipv4,
            IpAddr::V6(_) => Self::Ipv6,
        }
    }

    /// `IPv4` or `IPv6`, the API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "IPv4",
            Self::Ipv6 => "IPv6",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "IPv4" => Some(Self::Ipv4),
            "IPv6" => Some(Self::Ipv6),
            _ => None,
        }
    }

    /// The family a dual-stack Service adds to this one.
    pub fn other(self) -> Self {
        match self {
            Self::Ipv4 => Self::Ipv6,
            Self::Ipv6 => Self::Ipv4,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a flag's list of CIDRs (one per family) was refused, in
/// kube-apiserver's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrListError {
    #[error("{flag} must contain at least one valid cidr")]
    Empty { flag: &'static str },
    #[error("{flag}[{index}] {value:?} is not a valid CIDR")]
    Invalid {
        flag: &'static str,
        index: usize,
        value: String,
    },
    #[error("{flag} must not contain more than two entries")]
    TooMany { flag: &'static str },
    #[error("{flag}[0] and {flag}[1] must be of different IP family")]
    SameFamily { flag: &'static str },
    #[error(
        "specified {flag}{at} is too large; for {bits}-bit addresses, the mask must be >= {min}"
    )]
    TooLarge {
        flag: &'static str,
        at: String,
        bits: u8,
        min: u8,
    },
}

/// `flag`'s value: one CIDR, or two of different families (host bits
/// cleared), the primary first.
pub fn parse_dual_stack(flag: &'static str, s: &str) -> Result<Vec<IpNet>, CidrListError> {
    if s.trim().is_empty() {
        return Err(CidrListError::Empty { flag });
    }
    let entries: Vec<&str> = s.split(',').collect();
    if entries.len() > 2 {
        return Err(CidrListError::TooMany { flag });
    }
    let mut nets = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let net: IpNet = entry.trim().parse().map_err(|_| CidrListError::Invalid {
            flag,
            index,
            value: (*entry).to_owned(),
        })?;
        nets.push(net.trunc());
    }
    if let [first, second] = nets.as_slice()
        && IpFamily::of(first.addr()) == IpFamily::of(second.addr())
    {
        return Err(CidrListError::SameFamily { flag });
    }
    Ok(nets)
}

/// The service ranges, the primary one (whose family single-stack Services
/// get) first, at most one per family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCidrs(Vec<IpNet>);

impl ServiceCidrs {
    pub fn primary(&self) -> IpNet {
        self.0[0]
    }

    pub fn iter(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.0.iter().copied()
    }

    /// The configured families, the primary first.
    pub fn families(&self) -> Vec<IpFamily> {
        self.iter().map(|net| IpFamily::of(net.addr())).collect()
    }
}

impl FromStr for ServiceCidrs {
    type Err = CidrListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let flag = "--service-cluster-ip-range";
        let nets = parse_dual_stack(flag, s)?;
        for (index, net) in nets.iter().enumerate() {
            let bits = net.max_prefix_len();
            if bits - net.prefix_len() > MAX_RANGE_BITS {
                return Err(CidrListError::TooLarge {
                    flag,
                    at: if index == 0 {
                        String::new()
                    } else {
                        format!("[{index}]")
                    },
                    bits,
                    min: bits - MAX_RANGE_BITS,
                });
            }
        }
        Ok(Self(nets))
    }
}

impl fmt::Display for ServiceCidrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets: Vec<String> = self.0.iter().map(IpNet::to_string).collect();
        f.write_str(&nets.join(","))
    }
}

/// skiff's `--load-balancer-pool`: where LoadBalancer ingress IPs come
/// from, one range per family (`172.18.255.0/24,fd00:172:18:255::/112`),
/// as MetalLB and k3s's servicelb are given one per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadBalancerPools(Vec<IpNet>);

impl LoadBalancerPools {
    pub fn iter(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.0.iter().copied()
    }
}

impl FromStr for LoadBalancerPools {
    type Err = CidrListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_dual_stack("--load-balancer-pool", s).map(Self)
    }
}

/// The addresses of one range that ClusterIPs (or LoadBalancer ingress
/// IPs) come from: all but the network address, and for IPv4 the
/// broadcast address (a /31 or /32 has neither); for IPv6 at most the
/// first 2^16, as kube-apiserver's allocators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPool {
    net: IpNet,
    reserved: Vec<IpAddr>,
}

impl IpPool {
    pub fn new(net: IpNet, reserved: Vec<IpAddr>) -> Self {
        Self {
            net: net.trunc(),
            reserved,
        }
    }

    pub fn family(&self) -> IpFamily {
        IpFamily::of(self.net.addr())
    }

    /// The first usable address, which Kubernetes gives to the `kubernetes`
    /// Service in `default`.
    pub fn first_address(&self) -> IpAddr {
        self.nth(0)
    }

    /// The network address as a number, and how many addresses follow it
    /// (the usable ones).
    fn span(&self) -> (u128, u128) {
        let base = to_u128(self.net.network());
        let host_bits = u32::from(self.net.max_prefix_len() - self.net.prefix_len());
        let size = 1u128.checked_shl(host_bits).unwrap_or(u128::MAX);
        let usable = match self.net {
            IpNet::V4(_) if host_bits <= 1 => return (base.wrapping_sub(1), size),
            IpNet::V4(_) => size - 2,
            IpNet::V6(_) if host_bits == 0 => return (base.wrapping_sub(1), 1),
            IpNet::V6(_) => size.min(MAX_IPV6_ADDRESSES) - 1,
        };
        (base, usable)
    }
}

impl Pool for IpPool {
    type Item = IpAddr;
    const WHAT: &'static str = "IP";

    fn size(&self) -> u64 {
        u64::try_from(self.span().1).expect("at most 2^32 IPv4 or 2^16 IPv6 addresses")
    }

    fn nth(&self, index: u64) -> IpAddr {
        let (base, _) = self.span();
        from_u128(
            self.family(),
            base.wrapping_add(1).wrapping_add(u128::from(index)),
        )
    }

    fn contains(&self, item: IpAddr) -> bool {
        if IpFamily::of(item) != self.family() {
            return false;
        }
        let (base, usable) = self.span();
        let offset = to_u128(item).wrapping_sub(base.wrapping_add(1));
        offset < usable
    }

    fn is_reserved(&self, item: IpAddr) -> bool {
        self.reserved.contains(&item)
    }

    fn describe(&self) -> String {
        self.net.to_string()
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(ip) => u128::from(u32::from(ip)),
        IpAddr::V6(ip) => u128::from(ip),
    }
}

fn from_u128(family: IpFamily, value: u128) -> IpAddr {
    match family {
        IpFamily::Ipv4 => Ipv4Addr::from(u32::try_from(value).expect("an IPv4 address")).into(),
        IpFamily::Ipv6 => Ipv6Addr::from(value).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(cidr: &str) -> IpPool {
        IpPool::new(cidr.parse().unwrap(), vec![])
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flag_values_as_kube_apiserver_takes_them() {
        let dual: ServiceCidrs = "10.96.0.0/12,fd00:10:96::/112".parse().unwrap();
        assert_eq!(dual.families(), [IpFamily::Ipv4, IpFamily::Ipv6]);
        assert_eq!(dual.to_string(), "10.96.0.0/12,fd00:10:96::/112");
        let v6_first: ServiceCidrs = "fd00:10:96::5/112,10.96.0.0/16".parse().unwrap();
        assert_eq!(v6_first.primary().to_string(), "fd00:10:96::/112");
        assert_eq!(v6_first.families(), [IpFamily::Ipv6, IpFamily::Ipv4]);

        let refused = |s: &str| s.parse::<ServiceCidrs>().unwrap_err().to_string();
        assert_eq!(
            refused(""),
            "--service-cluster-ip-range must contain at least one valid cidr"
        );
        assert_eq!(
            refused("10.96.0.0/12,fd00::/112,fd01::/112"),
            "--service-cluster-ip-range must not contain more than two entries"
        );
        assert_eq!(
            refused("10.96.0.0/12,10.200.0.0/16"),
            "--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family"
        );
        assert_eq!(
            refused("10.96.0.0/12,fd00::/64"),
            "specified --service-cluster-ip-range[1] is too large; for 128-bit addresses, the mask must be >= 108"
        );
        assert_eq!(
            refused("10.0.0.0/8"),
            "specified --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= 12"
        );
        assert_eq!(
            refused("10.96.0.0/12,nope"),
            "--service-cluster-ip-range[1] \"nope\" is not a valid CIDR"
        );
    }

    #[test]
    fn load_balancer_pools_are_one_per_family() {
        let dual: LoadBalancerPools = "172.18.255.7/24,fd00:172:18:255::/112".parse().unwrap();
        let nets: Vec<String> = dual.iter().map(|net| net.to_string()).collect();
        assert_eq!(nets, ["172.18.255.0/24", "fd00:172:18:255::/112"]);
        let v6: LoadBalancerPools = "fd00:172:18:255::/64".parse().unwrap();
        assert_eq!(v6.iter().count(), 1);
        assert_eq!(
            "10.0.0.0/24,10.1.0.0/24"
                .parse::<LoadBalancerPools>()
                .unwrap_err()
                .to_string(),
            "--load-balancer-pool[0] and --load-balancer-pool[1] must be of different IP family"
        );
        assert_eq!(
            "10.0.0.0"
                .parse::<LoadBalancerPools>()
                .unwrap_err()
                .to_string(),
            "--load-balancer-pool[0] \"10.0.0.0\" is not a valid CIDR"
        );
        assert_eq!(LoadBalancerPools::default().iter().count(), 0);
    }

    #[test]
    fn ipv4_pool_skips_network_and_broadcast() {
        let v4 = pool("10.96.0.0/24");
        assert_eq!(v4.size(), 254);
        assert_eq!(v4.first_address(), ip("10.96.0.1"));
        assert_eq!(v4.nth(253), ip("10.96.0.254"));
        assert!(!v4.contains(ip("10.96.0.0")) && !v4.contains(ip("10.96.0.255")));
        assert!(v4.contains(ip("10.96.0.254")) && !v4.contains(ip("fd00::1")));
        let single = pool("10.96.0.7/32");
        assert_eq!((single.size(), single.nth(0)), (1, ip("10.96.0.7")));
        assert!(single.contains(ip("10.96.0.7")));
        let pair = pool("192.168.1.6/31");
        assert_eq!((pair.size(), pair.nth(0)), (2, ip("192.168.1.6")));
        let wide = pool("10.96.0.0/12");
        assert_eq!(wide.size(), (1 << 20) - 2);
        assert_eq!(wide.nth(wide.size() - 1), ip("10.111.255.254"));
        assert!(!wide.contains(ip("10.111.255.255")) && !wide.contains(ip("10.112.0.1")));
        assert_eq!(wide.describe(), "10.96.0.0/12");
    }

    #[test]
    fn ipv6_pool_keeps_the_last_address_and_at_most_2_to_the_16() {
        let v6 = pool("fd00:10:96::/112");
        assert_eq!(v6.size(), 65535);
        assert_eq!(v6.first_address(), ip("fd00:10:96::1"));
        assert_eq!(v6.nth(65534), ip("fd00:10:96::ffff"));
        assert!(v6.contains(ip("fd00:10:96::ffff")));
        assert!(!v6.contains(ip("fd00:10:96::")) && !v6.contains(ip("fd00:10:97::1")));
        assert!(!v6.contains(ip("10.96.0.1")));
        let wide = pool("fd00:10:96::/108");
        assert_eq!(wide.size(), 65535);
        assert!(!wide.contains(ip("fd00:10:96::1:0")));
        let small = pool("fd00::/126");
        assert_eq!(small.size(), 3);
        assert_eq!(small.describe(), "fd00::/126");
    }
}
