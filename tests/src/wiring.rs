//! The links, addresses and routes of a cluster, one piece at a time. Every
//! veth is created with its peer directly in the target netns, so nothing
//! but the control-plane link ever exists in the root netns.

use std::net::Ipv4Addr;

use crate::addressing::{
    CONTROL_PLANE_IP, EXT_IPV6, FABRIC_CIDR, FABRIC_IPV6_PREFIX_LEN, POD_BRIDGE, POD_SUPERNET,
    SERVICE_CIDR, SERVICE_CIDR_V6, node_ipv6, pod_cidr_v6, pod_gateway_v6,
};
use crate::cmd::{ip, ip_in, run};
use crate::error::Result;
use crate::exec;
use crate::hosts::{Host, Node, Pod};
use crate::netns;
use crate::xdp_peer;

/// Marks the root routes the harness adds (`proto 83`), so teardown removes
/// its own blackhole and never someone else's.
pub(crate) const ROUTE_PROTO: &str = "83";

/// The bridge in the fabric netns.
const FABRIC_BRIDGE: &str = "br0";

/// The fabric netns and its bridge: no addresses, no routes, it only switches.
pub(crate) fn fabric(fabric: &str) -> Result<()> {
    netns::add(fabric)?;
    // No forward delay: ports forward as soon as they are up.
    ip_in(
        fabric,
        &format!("link add {FABRIC_BRIDGE} type bridge forward_delay 0"),
    )?;
    ip_in(fabric, &format!("link set {FABRIC_BRIDGE} up"))?;
    Ok(())
}

/// The only root-netns link, `root_link` with 172.30.0.254/24, its peer `cp`
/// on the fabric bridge; plus a root route to each node's pod CIDR.
pub(crate) fn control_plane(root_link: &str, fabric: &str, nodes: &[Node]) -> Result<()> {
    ip(&format!(
        "link add {root_link} type veth peer name cp netns {fabric}"
    ))?;
    ip_in(fabric, &format!("link set cp master {FABRIC_BRIDGE} up"))?;
    let len = FABRIC_CIDR.prefix_len();
    ip(&format!(
        "addr add {CONTROL_PLANE_IP}/{len} dev {root_link}"
    ))?;
    ip(&format!("link set {root_link} up"))?;
    for node in nodes {
        let (cidr, via) = (node.pod_cidr(), node.ip());
        ip(&format!(
            "route add {cidr} via {via} dev {root_link} proto {ROUTE_PROTO}"
        ))?;
    }
    Ok(())
}

/// A stray connect to a ClusterIP from the host fails here instead of
/// following the default route out of the machine.
pub(crate) fn service_blackhole() -> Result<()> {
    ip(&format!(
        "route replace blackhole {SERVICE_CIDR} proto {ROUTE_PROTO}"
    ))
    .map(drop)
}

/// The same for the IPv6 service range, on a dual-stack cluster: a
/// connect the socket hooks let through (an address no Service has, from
/// outside skiff's cgroup) fails on the host.
pub(crate) fn service_blackhole_v6() -> Result<()> {
    ip(&format!(
        "-6 route replace blackhole {SERVICE_CIDR_V6} proto {ROUTE_PROTO}"
    ))
    .map(drop)
}

/// Creates netns `host.netns` with its `eth0` on the fabric bridge (fabric
/// side named `port`) and the host's address.
pub(crate) fn host_on_fabric(fabric: &str, host: &Host, port: &str) -> Result<()> {
    let ns = host.netns();
    netns::add(ns)?;
    ip_in(
        fabric,
        &format!("link add {port} type veth peer name eth0 netns {ns}"),
    )?;
    ip_in(
        fabric,
        &format!("link set {port} master {FABRIC_BRIDGE} up"),
    )?;
    ip_in(
        ns,
        &format!(
            "addr add {}/{} dev eth0",
            host.ip(),
            FABRIC_CIDR.prefix_len()
        ),
    )?;
    ip_in(ns, "link set eth0 up")?;
    wire_like(fabric, port, ns)
}

/// Makes a fabric link behave like a wire between real NICs: packets on it
/// carry complete checksums in both directions, and the fabric side takes
/// frames an XDP program transmits back (veth needs NAPI, enabled by GRO,
/// for XDP_TX).
///
/// Complete checksums, because an XDP program can only update a checksum
/// it can trust: veth would otherwise pass the sender's unfinished
/// checksum offload along (`CHECKSUM_PARTIAL`, only the pseudo-header's sum
/// in the field), which no real wire carries. The host side sends complete
/// ones; so must the fabric port, where GRO merges a TCP stream's segments
/// and the port towards a node whose uplink runs XDP (it has no GSO then)
/// splits them again in software, leaving each segment's checksum to a
/// transmit offload unless the port has none.
fn wire_like(fabric: &str, port: &str, host_ns: &str) -> Result<()> {
    let ethtool = |ns: &str, args: &[&str]| {
        let mut ethtool = exec::in_netns("ethtool".as_ref(), &netns::path(ns), None);
        run(ethtool.args(args)).map(drop)
    };
    ethtool(host_ns, &["-K", "eth0", "tx", "off"])?;
    ethtool(fabric, &["-K", port, "tx", "off", "gro", "on"])
}

/// A node: on the fabric, with the pass-only XDP program on the fabric
/// side of its uplink (`xdp_peer`), `cbr0` as its pods' gateway, forwarding
/// on, routes to the other nodes' pods (host-gw) and an `unreachable`
/// service CIDR.
pub(crate) fn node(fabric: &str, node: &Node, nodes: &[Node]) -> Result<()> {
    host_on_fabric(fabric, &node.host, node.name())?;
    xdp_peer::attach(fabric, node.name())?;
    let ns = node.netns();
    let mac = pod_bridge_mac(node.pod_gateway());
    ip_in(
        ns,
        &format!("link add {POD_BRIDGE} address {mac} type bridge forward_delay 0"),
    )?;
    let len = node.pod_cidr().prefix_len();
    ip_in(
        ns,
        &format!("addr add {}/{len} dev {POD_BRIDGE}", node.pod_gateway()),
    )?;
    ip_in(ns, &format!("link set {POD_BRIDGE} up"))?;
    for other in nodes.iter().filter(|o| o.index() != node.index()) {
        ip_in(
            ns,
            &format!("route add {} via {}", other.pod_cidr(), other.ip()),
        )?;
    }
    // A ClusterIP the datapath does not translate gets an immediate ICMP
    // error instead of a connect that hangs.
    ip_in(ns, &format!("route add unreachable {SERVICE_CIDR}"))?;
    // Not `ip netns exec`: /proc/sys/net belongs to the netns of the opener.
    let mut sysctl = exec::in_netns("sysctl".as_ref(), &netns::path(ns), None);
    run(sysctl.args(["-q", "-w", "net.ipv4.ip_forward=1"]))?;
    Ok(())
}

/// The pod bridge's MAC address, set when the bridge is made: locally
/// administered, ending in the gateway's IPv4 address. A bridge whose
/// address nobody set takes the lowest of its ports' addresses, so a pod
/// joining could change it; the pods that had resolved their gateway would
/// then send through it to an address the bridge hands up as another
/// host's, the node would drop it, and their connects to other nodes' pods
/// would time out until their neighbour entry aged (the agent's kubelet
/// fixes the address of the bridge its own pods join for the same reason).
fn pod_bridge_mac(gateway: Ipv4Addr) -> String {
    let [a, b, c, d] = gateway.octets();
    format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// A node's IPv6 side on a dual-stack cluster: its fabric address, `cbr0`'s
/// IPv6 gateway address, IPv6 forwarding, routes to the other nodes' IPv6
/// pod CIDRs (host-gw, as for IPv4), and an `unreachable` IPv6 service
/// range. No IPv6 route leaves the node's netns for anywhere but another
/// node's.
pub(crate) fn node_ipv6_side(node: &Node, nodes: &[Node]) -> Result<()> {
    let ns = node.netns();
    let (address, len) = (node_ipv6(node.index()), FABRIC_IPV6_PREFIX_LEN);
    // No duplicate address detection: the plan gives every address once,
    // and the addresses must work at once.
    // `replace`: a cluster brought up again keeps what it had.
    ip_in(ns, &format!("addr replace {address}/{len} dev eth0 nodad"))?;
    let gateway = pod_gateway_v6(node.index());
    ip_in(
        ns,
        &format!("addr replace {gateway}/64 dev {POD_BRIDGE} nodad"),
    )?;
    for other in nodes.iter().filter(|o| o.index() != node.index()) {
        let (cidr, via) = (pod_cidr_v6(other.index()), node_ipv6(other.index()));
        ip_in(ns, &format!("-6 route replace {cidr} via {via}"))?;
    }
    // As for IPv4: an IPv6 ClusterIP the datapath does not translate fails
    // at once.
    ip_in(
        ns,
        &format!("-6 route replace unreachable {SERVICE_CIDR_V6}"),
    )?;
    let mut sysctl = exec::in_netns("sysctl".as_ref(), &netns::path(ns), None);
    run(sysctl.args(["-q", "-w", "net.ipv6.conf.all.forwarding=1"]))?;
    Ok(())
}

/// The outside client's IPv6 address on a dual-stack cluster, on the
/// fabric's prefix: the nodes' IPv6 addresses are on-link, and nothing
/// else is routed.
pub(crate) fn ext_ipv6_side(ext: &Host) -> Result<()> {
    let len = FABRIC_IPV6_PREFIX_LEN;
    ip_in(
        ext.netns(),
        &format!("addr replace {EXT_IPV6}/{len} dev eth0 nodad"),
    )
    .map(drop)
}

/// A pod's netns, `eth0` with its address, the node side `veth<n>` on
/// `cbr0`, and routes for pods, services and the fabric via `cbr0`.
pub(crate) fn pod(node: &Node, pod: &Pod, host_number: u32) -> Result<()> {
    let (node_ns, ns) = (node.netns(), pod.netns());
    netns::add(ns)?;
    let node_side = format!("veth{host_number}");
    ip_in(
        node_ns,
        &format!("link add {node_side} type veth peer name eth0 netns {ns}"),
    )?;
    ip_in(
        node_ns,
        &format!("link set {node_side} master {POD_BRIDGE} up"),
    )?;
    ip_in(
        ns,
        &format!(
            "addr add {}/{} dev eth0",
            pod.ip(),
            node.pod_cidr().prefix_len()
        ),
    )?;
    ip_in(ns, "link set eth0 up")?;
    for cidr in [POD_SUPERNET, SERVICE_CIDR, FABRIC_CIDR] {
        ip_in(ns, &format!("route add {cidr} via {}", node.pod_gateway()))?;
    }
    Ok(())
}
