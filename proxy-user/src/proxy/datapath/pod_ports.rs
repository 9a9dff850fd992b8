//! `skiff_pod_ports` and `skiff_podports6`: the node side of each local
//! pod's veth, by the pod's IPv4 or IPv6 address, for the XDP program's
//! redirect of frames to local backends. The IPv4 map is a device map
//! (which the kernel keeps to live devices); the IPv6 one a hash map of
//! ifindexes, as a device map's keys are 4 bytes.
//!
//! A frame redirected into a veth is handed to the peer (the pod's side)
//! through the peer's ring and NAPI, which a veth has only while it runs
//! an XDP program or has GRO on; without either the kernel drops the frame
//! (drivers/net/veth.c, `veth_xdp_xmit`: `-ENXIO` when the receiving queue
//! has no NAPI). So each pod's interfaces get GRO turned on first, from
//! inside the pod's network namespace, and only then is the pod's address
//! mapped to its port. GRO is a setting of the device: it lasts as long as
//! the veth, survives agent restarts, and goes with the pod.
//!
//! Pods are the network namespaces of the processes in the node's cgroup
//! subtree (as the socket reset finds them), but the agent's own (the
//! node's, where host-network pods run); a pod's port is the bridge
//! port its MAC address was learned on. The kernel removes an entry when
//! its device goes away; the agent removes a pod's entries when its
//! namespace is gone.
use std::{
    collections::{HashMap, HashSet},
    io,
    net::IpAddr,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::PathBuf,
    process::Command,
};

use aya::{
    Ebpf,
    maps::{DevMapHash, HashMap as BpfHashMap, MapData},
};
use nix::{ifaddrs::getifaddrs, net::if_::if_nametoindex, sys::socket::SockaddrStorage};
use proxy_common::{Ipv6Words, ipv6_words, map_names};
use serde::Deserialize;
use tracing::{debug, warn};

use super::{error::DatapathError, netns};

/// `ETHTOOL_SGRO` (linux/ethtool.h): set the device's GRO flag.
const ETHTOOL_SGRO: u32 = 0x2c;

/// `struct ethtool_value` (linux/ethtool.h), the argument of `ETHTOOL_SGRO`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// One pod's interface: an address of it (IPv4, or IPv6 but link-local)
/// and its MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PodInterface {
    address: IpAddr,
    mac: [u8; 6],
}

pub struct PodPorts {
    map: DevMapHash<MapData>,
    map6: BpfHashMap<MapData, Ipv6Words, u32>,
    cgroup: PathBuf,
    /// The bridges the pods' veths are ports of (`--pod-interface`).
    bridges: Vec<String>,
    /// The addresses mapped for each pod namespace seen.
    mapped: HashMap<(u64, u64), Vec<IpAddr>>,
}

impl PodPorts {
    pub fn take(
        ebpf: &mut Ebpf,
        cgroup: PathBuf,
        bridges: Vec<String>,
    ) -> Result<Self, DatapathError> {
        let name = map_names::POD_PORTS;
        let map = ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))?;
        let map = DevMapHash::try_from(map).map_err(|cause| DatapathError::Map { name, cause })?;
        let name = map_names::POD_PORTS6;
        let map6 = ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))?;
        let map6 =
            BpfHashMap::try_from(map6).map_err(|cause| DatapathError::Map { name, cause })?;
        Ok(Self {
            map,
            map6,
            cgroup,
            bridges,
            mapped: HashMap::new(),
        })
    }

    /// Maps the pods that appeared since the last call (those whose MAC
    /// address no bridge has learned yet are tried again next time), and
    /// unmaps those whose namespace is gone.
    pub fn refresh(&mut self) -> io::Result<()> {
        // A host-network pod shares the agent's namespace: the node's own
        // interfaces are no pod's.
        let node = netns::own_id()?;
        let namespaces: Vec<_> = netns::of_subtree(&self.cgroup)?
            .into_iter()
            .filter(|netns| netns.id != node)
            .collect();
        let present: HashSet<_> = namespaces.iter().map(|netns| netns.id).collect();
        for (_, addresses) in self.mapped.extract_if(|id, _| !present.contains(id)) {
            for address in addresses {
                // Already gone if the kernel removed it with the device.
                let _ = match address {
                    IpAddr::V4(address) => self.map.remove(u32::from_ne_bytes(address.octets())),
                    IpAddr::V6(address) => self.map6.remove(&ipv6_words(address.octets())),
                };
            }
        }
        let new: Vec<_> = namespaces
            .into_iter()
            .filter(|netns| !self.mapped.contains_key(&netns.id))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let prepared = netns::run_in_each(&new, |_| prepare_pod_side());
        let ports = self.bridge_ports()?;
        for (netns, interfaces) in new.iter().zip(prepared) {
            let interfaces = match interfaces {
                Ok(interfaces) => interfaces,
                Err(error) => {
                    warn!(pid = netns.pid, %error, "preparing a pod's veth for XDP redirects failed");
                    continue;
                }
            };
            let mut addresses = Vec::new();
            for interface in interfaces {
                let Some(&port) = ports.get(&interface.mac) else {
                    continue;
                };
                if let Err(error) = self.map_port(interface.address, port) {
                    warn!(address = %interface.address, port, %error, "mapping a pod's port failed");
                    continue;
                }
                debug!(address = %interface.address, port, "pod port mapped");
                addresses.push(interface.address);
            }
            if !addresses.is_empty() {
                self.mapped.insert(netns.id, addresses);
            }
        }
        Ok(())
    }

    /// Maps `address` to the pod port `port` in its family's map.
    fn map_port(&mut self, address: IpAddr, port: u32) -> io::Result<()> {
        match address {
            IpAddr::V4(address) => {
                let key = u32::from_ne_bytes(address.octets());
                self.map
                    .insert(key, port, None, 0)
                    .map_err(io::Error::other)
            }
            IpAddr::V6(address) => self
                .map6
                .insert(ipv6_words(address.octets()), port, 0)
                .map_err(io::Error::other),
        }
    }

    /// The bridges' learned MAC addresses, with the ifindex of the port
    /// each was learned on.
    fn bridge_ports(&self) -> io::Result<HashMap<[u8; 6], u32>> {
        let mut ports = HashMap::new();
        for bridge in &self.bridges {
            let output = Command::new("bridge")
                .args(["-j", "fdb", "show", "br", bridge])
                .output()?;
            if !output.status.success() {
                return Err(io::Error::other(format!(
                    "bridge fdb show br {bridge}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
            let entries: Vec<FdbEntry> =
                serde_json::from_slice(&output.stdout).map_err(io::Error::other)?;
            for entry in entries {
                let (Some(mac), Some(port)) = (parse_mac(&entry.mac), entry.ifname) else {
                    continue;
                };
                // A port that went away since the listing.
                if let Ok(index) = if_nametoindex(port.as_str()) {
                    ports.insert(mac, index);
                }
            }
        }
        Ok(ports)
    }
}

/// One entry of `bridge -j fdb show`.
#[derive(Deserialize)]
struct FdbEntry {
    mac: String,
    ifname: Option<String>,
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Run inside a pod's namespace: turns GRO on for each interface with an
/// IPv4 or IPv6 address but the loopback (link-local IPv6 addresses are
/// no backend's), and returns them, once per address.
fn prepare_pod_side() -> io::Result<Vec<PodInterface>> {
    let mut macs = HashMap::new();
    let mut addresses = Vec::new();
    for entry in getifaddrs()? {
        let Some(address) = entry.address else {
            continue;
        };
        if let Some(mac) = address.as_link_addr().and_then(|link| link.addr()) {
            macs.insert(entry.interface_name, mac);
        } else if let Some(address) = pod_address(&address) {
            addresses.push((entry.interface_name, address));
        }
    }
    let mut interfaces = Vec::new();
    let mut prepared = HashSet::new();
    for (name, address) in addresses {
        let Some(&mac) = macs.get(&name) else {
            continue;
        };
        if prepared.insert(name.clone()) {
            enable_gro(&name)?;
        }
        interfaces.push(PodInterface { address, mac });
    }
    Ok(interfaces)
}

/// A pod's address a backend can have: IPv4 or IPv6, neither loopback nor
/// (IPv6) link-local.
fn pod_address(address: &SockaddrStorage) -> Option<IpAddr> {
    if let Some(inet) = address.as_sockaddr_in() {
        let ip = inet.ip();
        return (!ip.is_loopback()).then_some(IpAddr::V4(ip));
    }
    let ip = address.as_sockaddr_in6()?.ip();
    (!ip.is_loopback() && !ip.is_unicast_link_local()).then_some(IpAddr::V6(ip))
}

/// Turns on GRO for the interface `name` of the calling thread's network
/// namespace (the legacy ethtool ioctl, which every kernel with veth XDP
/// has).
fn enable_gro(name: &str) -> io::Result<()> {
    // SAFETY: a plain socket call; the descriptor is owned at once.
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if socket < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just created and owned nowhere else.
    let socket = unsafe { OwnedFd::from_raw_fd(socket) };
    let mut value = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: 1,
    };
    // SAFETY: all-zero is a valid `ifreq`.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return Err(io::Error::other(format!("interface name {name} too long")));
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_data = (&raw mut value).cast();
    // SAFETY: `request` names the interface and points at `value`, both
    // live for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL, &mut request) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_mac;

    #[test]
    fn macs_are_parsed_from_fdb_text() {
        assert_eq!(
            parse_mac("0a:1b:2c:3d:4e:5f"),
            Some([0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f])
        );
        assert_eq!(parse_mac("0a:1b:2c:3d:4e"), None);
        assert_eq!(parse_mac("0a:1b:2c:3d:4e:5f:60"), None);
        assert_eq!(parse_mac("zz:1b:2c:3d:4e:5f"), None);
    }
}
