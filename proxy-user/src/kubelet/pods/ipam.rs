//! Pod addresses from the node's pod CIDR. Each allocation is a file
//! `<state>/ips/<address>` naming its pod, created with O_EXCL: a restarted
//! agent finds every live pod's address there and never hands it out twice.
//! Addresses go round-robin, as the host-local IPAM plugin hands them out:
//! a freed address is reused only after the rest of the range, so a
//! replacement pod never inherits neighbour entries, conntrack state or
//! in-flight packets that were meant for the pod before it.
//!
//! On a dual-stack node a pod's IPv6 address is its IPv4 address's host
//! number in the node's IPv6 pod CIDR: it needs no state of its own and
//! comes and goes with the IPv4 one.
use std::{
    fmt, fs, io,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    str::FromStr,
};

/// An IPv4 CIDR such as `10.244.1.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub base: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    /// Host number `n` of the CIDR (`.1` is the pods' gateway).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + n)
    }

    fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{s:?} is not an IPv4 CIDR like 10.244.1.0/24");
        let (base, len) = s.split_once('/').ok_or_else(invalid)?;
        let base: Ipv4Addr = base.parse().map_err(|_| invalid())?;
        let len: u8 = len.parse().map_err(|_| invalid())?;
        if !(8..=30).contains(&len) {
            return Err(format!("{s}: a pod CIDR needs a prefix length of 8 to 30"));
        }
        let mask = u32::MAX << (32 - u32::from(len));
        if u32::from(base) & !mask != 0 {
            return Err(format!("{s}: host bits are set"));
        }
        Ok(Cidr { base, len })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.len)
    }
}

/// An IPv6 CIDR such as `fd00:10:244:1::/64`: large enough to pair every
/// address of an IPv4 pod CIDR with one of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Cidr {
    pub base: Ipv6Addr,
    pub len: u8,
}

impl Ipv6Cidr {
    /// Host number `n` of the CIDR (`::1` is the pods' gateway).
    pub fn host(&self, n: u32) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.base) + u128::from(n))
    }
}

impl FromStr for Ipv6Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("{s:?} is not an IPv6 CIDR like fd00:10:244:1::/64");
        let (base, len) = s.split_once('/').ok_or_else(invalid)?;
        let base: Ipv6Addr = base.parse().map_err(|_| invalid())?;
        let len: u8 = len.parse().map_err(|_| invalid())?;
        if !(64..=120).contains(&len) {
            return Err(format!(
                "{s}: an IPv6 pod CIDR needs a prefix length of 64 to 120"
            ));
        }
        let host_mask = u128::MAX >> len;
        if u128::from(base) & host_mask != 0 {
            return Err(format!("{s}: host bits are set"));
        }
        Ok(Ipv6Cidr { base, len })
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.len)
    }
}

/// A node's pod CIDRs: IPv4, and IPv6 on a dual-stack node
/// (`10.244.1.0/24,fd00:10:244:1::/64`, as the Node's `spec.podCIDRs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodCidrs {
    pub ipv4: Cidr,
    pub ipv6: Option<Ipv6Cidr>,
}

impl PodCidrs {
    /// The IPv6 address paired with the pod address `ip` of the IPv4 CIDR.
    pub fn ipv6_of(&self, ip: Ipv4Addr) -> Option<Ipv6Addr> {
        let n = u32::from(ip) - u32::from(self.ipv4.base);
        self.ipv6.map(|cidr| cidr.host(n))
    }

    /// As the Node's `spec.podCIDRs` lists them.
    pub fn spec_pod_cidrs(&self) -> Vec<String> {
        let ipv6 = self.ipv6.iter().map(ToString::to_string);
        std::iter::once(self.ipv4.to_string()).chain(ipv6).collect()
    }
}

impl FromStr for PodCidrs {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split(',').collect::<Vec<_>>().as_slice() {
            [ipv4] => Ok(PodCidrs {
                ipv4: ipv4.parse()?,
                ipv6: None,
            }),
            [ipv4, ipv6] => Ok(PodCidrs {
                ipv4: ipv4.parse()?,
                ipv6: Some(ipv6.parse()?),
            }),
            _ => Err(format!(
                "{s:?}: one IPv4 CIDR, optionally followed by an IPv6 one (IPV4,IPV6)"
            )),
        }
    }
}

impl fmt::Display for PodCidrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec_pod_cidrs().join(","))
    }
}

/// Who holds an address: `<namespace>/<name>/<uid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Holder {
    fn render(&self) -> String {
        format!("{}/{}/{}", self.namespace, self.name, self.uid)
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut parts = text.trim().splitn(3, '/');
        Some(Holder {
            namespace: parts.next()?.to_owned(),
            name: parts.next()?.to_owned(),
            uid: parts.next()?.to_owned(),
        })
    }
}

/// The file beside the allocations that holds the host number handed out
/// last; its name is no address, so `held` skips it.
const LAST: &str = "last-allocated";

pub struct Ipam {
    cidr: Cidr,
    dir: PathBuf,
}

impl Ipam {
    pub fn new(cidr: Cidr, state_dir: &Path) -> io::Result<Ipam> {
        let dir = state_dir.join("ips");
        fs::create_dir_all(&dir)?;
        Ok(Ipam { cidr, dir })
    }

    /// The address `holder` already has, or the first free one after the
    /// last handed out, wrapping round (from .2: .0 is the network, .1 the
    /// gateway, the last the broadcast).
    pub fn allocate(&self, holder: &Holder) -> io::Result<Ipv4Addr> {
        if let Some((ip, _)) = self.held().into_iter().find(|(_, h)| h == holder) {
            return Ok(ip);
        }
        let hosts = 2..self.cidr.size() - 1;
        let count = hosts.end - hosts.start;
        let after_last = self.last().map_or(0, |n| n + 1 - hosts.start);
        for offset in 0..count {
            let n = hosts.start + (after_last + offset) % count;
            let ip = self.cidr.host(n as u32);
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(self.dir.join(ip.to_string()))
            {
                Ok(file) => {
                    io::Write::write_all(&mut &file, holder.render().as_bytes())?;
                    fs::write(self.dir.join(LAST), n.to_string())?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "the pod CIDR {} is full",
            self.cidr
        )))
    }

    /// The host number handed out last, if it is in the range.
    fn last(&self) -> Option<u64> {
        let text = fs::read_to_string(self.dir.join(LAST)).ok()?;
        let n: u64 = text.trim().parse().ok()?;
        (2..self.cidr.size() - 1).contains(&n).then_some(n)
    }

    pub fn release(&self, ip: Ipv4Addr) {
        let _ = fs::remove_file(self.dir.join(ip.to_string()));
    }

    /// Every allocation and its holder.
    pub fn held(&self) -> Vec<(Ipv4Addr, Holder)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let ip = entry.file_name().to_str()?.parse().ok()?;
                let holder = Holder::parse(&fs::read_to_string(entry.path()).ok()?)?;
                Some((ip, holder))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(name: &str) -> Holder {
        Holder {
            namespace: "default".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    #[test]
    fn addresses_skip_network_gateway_and_broadcast_and_persist() {
        let dir = std::env::temp_dir().join(format!("skiff-ipam-test-{}", std::process::id()));
        let cidr: Cidr = "10.244.1.0/30".parse().unwrap();
        let ipam = Ipam::new(cidr, &dir).unwrap();
        assert_eq!(
            ipam.allocate(&holder("a")).unwrap(),
            Ipv4Addr::new(10, 244, 1, 2)
        );
        assert!(
            ipam.allocate(&holder("b")).is_err(),
            "a /30 has one pod address"
        );
        // A restarted agent sees the same allocation.
        let again = Ipam::new(cidr, &dir).unwrap();
        assert_eq!(
            again.allocate(&holder("a")).unwrap(),
            Ipv4Addr::new(10, 244, 1, 2)
        );
        again.release(Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(
            again.allocate(&holder("b")).unwrap(),
            Ipv4Addr::new(10, 244, 1, 2)
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn freed_addresses_come_back_only_after_the_rest_of_the_range() {
        let dir = std::env::temp_dir().join(format!("skiff-ipam-rr-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        // A /29: pod addresses .2 to .6.
        let ipam = Ipam::new("10.244.1.0/29".parse().unwrap(), &dir).unwrap();
        let host = |n| Ipv4Addr::new(10, 244, 1, n);
        assert_eq!(ipam.allocate(&holder("a")).unwrap(), host(2));
        assert_eq!(ipam.allocate(&holder("b")).unwrap(), host(3));
        ipam.release(host(2));
        assert_eq!(ipam.allocate(&holder("c")).unwrap(), host(4));
        assert_eq!(ipam.allocate(&holder("d")).unwrap(), host(5));
        assert_eq!(ipam.allocate(&holder("e")).unwrap(), host(6));
        // Wrapped round: .2 is free again, .3 still held.
        assert_eq!(ipam.allocate(&holder("f")).unwrap(), host(2));
        assert!(ipam.allocate(&holder("g")).is_err(), "the range is full");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cidrs_parse_strictly() {
        assert_eq!(
            "10.244.1.0/24".parse::<Cidr>().unwrap().host(1),
            Ipv4Addr::new(10, 244, 1, 1)
        );
        assert!("10.244.1.1/24".parse::<Cidr>().is_err());
        assert!("10.244.1.0".parse::<Cidr>().is_err());
    }

    #[test]
    fn ipv6_addresses_pair_with_the_ipv4_ones() {
        let cidrs: PodCidrs = "10.244.1.0/24,fd00:10:244:1::/64".parse().unwrap();
        assert_eq!(cidrs.to_string(), "10.244.1.0/24,fd00:10:244:1::/64");
        assert_eq!(
            cidrs.ipv6_of(Ipv4Addr::new(10, 244, 1, 7)),
            Some("fd00:10:244:1::7".parse().unwrap())
        );
        let single: PodCidrs = "10.244.1.0/24".parse().unwrap();
        assert_eq!(single.ipv6_of(Ipv4Addr::new(10, 244, 1, 7)), None);
        assert_eq!(single.spec_pod_cidrs(), ["10.244.1.0/24"]);
        for bad in [
            "10.244.1.0/24,fd00:10:244:1::1/64",
            "10.244.1.0/24,fd00::/48",
            "10.244.1.0/24,10.245.1.0/24",
            "10.244.1.0/24,fd00::/64,fd01::/64",
        ] {
            assert!(bad.parse::<PodCidrs>().is_err(), "{bad}");
        }
    }
}
