//! A pod's network: a named netns `<prefix>-<namespace>.<name>`, `eth0` in
//! it with the pod's address, the node side of the veth on the pod bridge,
//! and routes via the bridge's address (the first of the pod CIDR) for the
//! pod CIDR's neighbours, the service CIDR and whatever `--pod-route` adds.
//! On a dual-stack node `eth0` has the pod's IPv6 address too, and IPv6
//! routes go via the bridge's first IPv6 address.
//! No default route unless an operator asks for one. The agent never
//! creates bridges nor touches any uplink.
use std::{
    fs, io,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::Command,
};

use super::ipam::PodCidrs;

const NETNS_DIR: &str = "/run/netns";

#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {detail}")]
pub struct NetnsError {
    command: String,
    detail: String,
}

/// Where a pod's network goes on this node.
#[derive(Debug, Clone)]
pub struct Plumbing {
    pub bridge: String,
    pub pod_cidrs: PodCidrs,
    pub routes: Vec<String>,
}

/// Where the agent records the bridge address it fixed: `<bridge> <MAC>`.
const FIXED_BRIDGE_ADDRESS: &str = "pod-bridge-address";

/// What [`Plumbing::fix_bridge_address`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum BridgeAddress {
    /// Set now, to the address the bridge had.
    Fixed(String),
    /// Fixed by this agent before it restarted. Setting it again, even to
    /// the same value, would flush the node's neighbour entries for its
    /// running pods.
    AlreadyFixed(String),
}

impl Plumbing {
    /// Sets the bridge's MAC address to the one it has, which fixes it. A
    /// bridge whose address nobody set takes the lowest of its ports'
    /// addresses, so a pod's veth joining or leaving can change it; every
    /// pod's neighbour entry for the gateway then names an address the
    /// bridge hands up as another host's, the node drops what the pods
    /// send through the gateway, and their connections to other nodes
    /// time out until the node next asks them for their own address (its
    /// ARP request carries the new MAC). A rolling update showed it. Once
    /// set, the kernel keeps it whatever ports come and go. The address is
    /// recorded in `state_dir`, so a restarted agent leaves it alone.
    pub fn fix_bridge_address(&self, state_dir: &Path) -> Result<BridgeAddress, NetnsError> {
        let shown = ip_output(&["-j", "link", "show", "dev", &self.bridge])?;
        let address = serde_json::from_str::<serde_json::Value>(&shown)
            .ok()
            .and_then(|links| links[0]["address"].as_str().map(str::to_owned))
            .ok_or_else(|| NetnsError {
                command: format!("ip -j link show dev {}", self.bridge),
                detail: format!("no MAC address in {shown}"),
            })?;
        let record = state_dir.join(FIXED_BRIDGE_ADDRESS);
        let fixed = format!("{} {address}", self.bridge);
        if fs::read_to_string(&record).is_ok_and(|recorded| recorded == fixed) {
            return Ok(BridgeAddress::AlreadyFixed(address));
        }
        ip(&["link", "set", "dev", &self.bridge, "address", &address])?;
        fs::write(&record, &fixed).map_err(|e| NetnsError {
            command: format!("write {}", record.display()),
            detail: e.to_string(),
        })?;
        Ok(BridgeAddress::Fixed(address))
    }
}

#[derive(Debug, Clone)]
pub struct Sandbox {
    pub netns: String,
    pub ip: Ipv4Addr,
    /// On a dual-stack node, the address paired with `ip`.
    pub ip6: Option<Ipv6Addr>,
}

impl Sandbox {
    /// The sandbox of the pod address `ip` on a node with `pod_cidrs`.
    pub fn of(netns: String, ip: Ipv4Addr, pod_cidrs: &PodCidrs) -> Self {
        Self {
            netns,
            ip,
            ip6: pod_cidrs.ipv6_of(ip),
        }
    }

    pub fn path(&self) -> PathBuf {
        path_of(&self.netns)
    }

    /// The node side of the veth: `skiff` and the address in hex, unique on
    /// the node and within IFNAMSIZ.
    fn veth(&self) -> String {
        format!("skiff{:08x}", u32::from(self.ip))
    }

    pub fn exists(&self) -> bool {
        self.path().exists()
    }

    /// Creates the netns and its link, or leaves an existing one (an agent
    /// restart adopts its pods). A half-built one is removed on failure.
    pub fn ensure(&self, plumbing: &Plumbing) -> Result<(), NetnsError> {
        if self.exists() {
            return Ok(());
        }
        self.create(plumbing).inspect_err(|_| self.remove())
    }

    fn create(&self, plumbing: &Plumbing) -> Result<(), NetnsError> {
        let (ns, veth) = (self.netns.as_str(), self.veth());
        let cidrs = &plumbing.pod_cidrs;
        let gateway = cidrs.ipv4.host(1).to_string();
        let gateway6 = cidrs.ipv6.map(|cidr| cidr.host(1).to_string());
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["link", "set", &veth, "master", &plumbing.bridge, "up"])?;
        let address = format!("{}/{}", self.ip, cidrs.ipv4.len);
        ip(&["-n", ns, "addr", "add", &address, "dev", "eth0"])?;
        if let (Some(ip6), Some(cidr)) = (self.ip6, cidrs.ipv6) {
            // No duplicate address detection: the address is ours alone,
            // and usable at once.
            let address = format!("{ip6}/{}", cidr.len);
            ip(&["-n", ns, "addr", "add", &address, "dev", "eth0", "nodad"])?;
        }
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        for cidr in &plumbing.routes {
            let via = match (cidr.contains(':'), &gateway6) {
                (false, _) => &gateway,
                (true, Some(gateway6)) => gateway6,
                (true, None) => {
                    return Err(NetnsError {
                        command: format!("ip -n {ns} route add {cidr}"),
                        detail: "an IPv6 route needs an IPv6 pod CIDR".to_owned(),
                    });
                }
            };
            ip(&["-n", ns, "route", "add", cidr, "via", via])?;
        }
        Ok(())
    }

    /// Deletes the veth and the netns, and forgets the pod's neighbour
    /// entry, so no packet for a later holder of the address goes to this
    /// pod's MAC; what is already gone is fine.
    pub fn remove(&self) {
        let _ = ip(&["link", "delete", &self.veth()]);
        let _ = ip(&["neigh", "flush", "to", &self.ip.to_string()]);
        if let Some(ip6) = self.ip6 {
            let _ = ip(&["neigh", "flush", "to", &ip6.to_string()]);
        }
        if self.exists() {
            let _ = ip(&["netns", "delete", &self.netns]);
        }
    }
}

/// Where the named netns `netns` is mounted.
pub fn path_of(netns: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns)
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    ip_output(args).map(drop)
}

/// Runs `ip` and returns its stdout.
fn ip_output(args: &[&str]) -> Result<String, NetnsError> {
    let command = format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e: io::Error| NetnsError {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(NetnsError {
        command,
        detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz_and_start_with_skiff() {
        let sandbox = Sandbox::of(
            "skiff-a".into(),
            Ipv4Addr::new(10, 244, 1, 2),
            &"10.244.1.0/24".parse().unwrap(),
        );
        assert_eq!(sandbox.veth(), "skiff0af40102");
        assert!(sandbox.veth().len() <= 15);
    }
}
