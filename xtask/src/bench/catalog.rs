//! The Services a benchmark programs, in one shape that every datapath
//! variant renders its own way: Kubernetes JSON in etcd for skiff,
//! iptables-restore input and an nft script for the kube-proxy baselines.
//!
//! Each variant gets its own VIP range and NodePorts, so that while a
//! baseline runs the skiff agent never translates the addresses it uses.

use std::net::Ipv4Addr;

use serde_json::{Value, json};
use skiff_tests::{
    EndpointSpec, PortSpec, endpoint_slice, endpoint_slice_key, service, service_key,
};

pub const NAMESPACE: &str = "bench";
/// Pods live in 10.244.0.0/16; kube-proxy masquerades traffic from outside it.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// The agents' `--service-cidr`: skiff's range only, so the socket hooks do
/// not refuse connects to the baselines' VIPs (which lie beyond it).
pub const SKIFF_SERVICE_CIDR: &str = "10.96.0.0/14";

/// Whose rules carry a set of Services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Skiff,
    Iptables,
    Nftables,
}

impl Plane {
    /// The first address of this plane's VIP range: skiff 10.96.0.0/14,
    /// iptables 10.100.0.0/15, nftables 10.102.0.0/15, all inside the
    /// harness's service CIDR (pods route it to their node).
    fn vip_base(self) -> u32 {
        let second_octet = match self {
            Plane::Skiff => 96,
            Plane::Iptables => 100,
            Plane::Nftables => 102,
        };
        u32::from(Ipv4Addr::new(10, second_octet, 0, 0))
    }

    /// The NodePort of the UDP sink Service measured on node 1.
    pub fn sink_node_port(self) -> u16 {
        match self {
            Plane::Skiff => 30080,
            Plane::Iptables => 30081,
            Plane::Nftables => 30082,
        }
    }
}

/// Of the XDP variant's sink Service, served on node 2.
pub const XDP_SINK_NODE_PORT: u16 = 30090;
/// Of the remote XDP variant's sink Service: a NodePort on node 2, the XDP
/// node, served by the sink on node 1, so node 2 sends every packet back
/// out of its uplink.
pub const XDP_REMOTE_SINK_NODE_PORT: u16 = 30091;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// As Kubernetes spells it.
    pub fn kubernetes(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// As iptables and nft spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcPort {
    pub name: &'static str,
    pub protocol: Protocol,
    pub port: u16,
    pub target_port: u16,
    pub node_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// 1-based node index.
    pub node: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Svc {
    pub name: String,
    pub vip: Ipv4Addr,
    pub ports: Vec<SvcPort>,
    pub endpoints: Vec<Endpoint>,
}

/// TCP ports of the backends `skiff-load serve` runs: one request per
/// connection, and echo until EOF.
pub const CRR_PORT: u16 = 8080;
pub const RR_PORT: u16 = 8081;
pub const IPERF_PORT: u16 = 5201;
pub const SINK_PORT: u16 = 9000;

/// The VIP of the `index`th datapath Service (0..16) of `plane`, from the
/// range's 33rd address on: skiff-control gives the first ones to its own
/// Services (`kubernetes` the first, `kube-dns` the tenth).
pub fn datapath_vip(plane: Plane, index: u32) -> Ipv4Addr {
    Ipv4Addr::from(plane.vip_base() + 32 + index)
}

/// The VIP of the scale sweep's `index`th Service: after the first /24,
/// which the datapath Services use.
pub fn scale_vip(plane: Plane, index: usize) -> Ipv4Addr {
    Ipv4Addr::from(plane.vip_base() + 256 + index as u32)
}

const fn tcp(name: &'static str, port: u16, target_port: u16) -> SvcPort {
    SvcPort {
        name,
        protocol: Protocol::Tcp,
        port,
        target_port,
        node_port: None,
    }
}

/// The Services of the datapath figures: `rpc` (connection rate and
/// latency, over `rpc_backends`), `iperf` (throughput, one backend: iperf3's
/// control and data connections must meet the same server) and `sink`
/// (NodePort packets, to `sink` on node 1).
pub fn datapath_services(
    plane: Plane,
    rpc_backends: &[Endpoint],
    iperf_backend: Endpoint,
    sink: Endpoint,
) -> Vec<Svc> {
    vec![
        Svc {
            name: "rpc".into(),
            vip: datapath_vip(plane, 0),
            ports: vec![tcp("crr", 80, CRR_PORT), tcp("rr", 81, RR_PORT)],
            endpoints: rpc_backends.to_vec(),
        },
        Svc {
            name: "iperf".into(),
            vip: datapath_vip(plane, 1),
            ports: vec![tcp("iperf", IPERF_PORT, IPERF_PORT)],
            endpoints: vec![iperf_backend],
        },
        sink_service("sink", datapath_vip(plane, 2), plane.sink_node_port(), sink),
    ]
}

/// skiff's second NodePort sink, on node 2, where the agent runs XDP.
pub fn xdp_sink_service(sink: Endpoint) -> Svc {
    sink_service(
        "sink-xdp",
        datapath_vip(Plane::Skiff, 3),
        XDP_SINK_NODE_PORT,
        sink,
    )
}

/// skiff's third NodePort sink: blasted at node 2 (XDP), served by the sink
/// on node 1.
pub fn xdp_remote_sink_service(sink: Endpoint) -> Svc {
    sink_service(
        "sink-xdp-remote",
        datapath_vip(Plane::Skiff, 4),
        XDP_REMOTE_SINK_NODE_PORT,
        sink,
    )
}

fn sink_service(name: &str, vip: Ipv4Addr, node_port: u16, sink: Endpoint) -> Svc {
    Svc {
        name: name.into(),
        vip,
        ports: vec![SvcPort {
            name: "udp",
            protocol: Protocol::Udp,
            port: SINK_PORT,
            target_port: SINK_PORT,
            node_port: Some(node_port),
        }],
        endpoints: vec![sink],
    }
}

/// The scale sweep's `index`th Service: 2 to 10 endpoints (cycling) taken
/// from `backends`, one HTTP-like port to the connection-rate server.
pub fn scale_service(plane: Plane, index: usize, backends: &[Endpoint]) -> Svc {
    let count = (2 + index % 9).min(backends.len());
    Svc {
        name: format!("scale-{index}"),
        vip: scale_vip(plane, index),
        ports: vec![tcp("http", 80, CRR_PORT)],
        endpoints: (0..count)
            .map(|k| backends[(index + k) % backends.len()])
            .collect(),
    }
}

fn port_specs(svc: &Svc) -> Vec<PortSpec> {
    svc.ports
        .iter()
        .map(|port| PortSpec {
            name: port.name,
            protocol: port.protocol.kubernetes(),
            port: port.port,
            target_port: port.target_port,
        })
        .collect()
}

/// The Service's and its EndpointSlice's (key, JSON) as the API server
/// stores them.
pub fn etcd_objects(svc: &Svc) -> [(String, Value); 2] {
    [
        (service_key(NAMESPACE, &svc.name), service_object(svc)),
        endpoint_slice_object(svc, &svc.endpoints),
    ]
}

fn service_object(svc: &Svc) -> Value {
    let mut service_json = service(NAMESPACE, &svc.name, svc.vip, &port_specs(svc));
    if svc.ports.iter().any(|port| port.node_port.is_some()) {
        service_json["spec"]["type"] = "NodePort".into();
        for (i, port) in svc.ports.iter().enumerate() {
            if let Some(node_port) = port.node_port {
                service_json["spec"]["ports"][i]["nodePort"] = node_port.into();
            }
        }
    }
    service_json
}

/// The Service and its v1 Endpoints as a client creates them through the
/// API, for kube-proxy 1.20 (which reads Endpoints with
/// `EndpointSliceProxying=false`; skiff-control serves no v1beta1
/// EndpointSlices). No selector: the Endpoints are the bench's, as for any
/// Service whose endpoints are managed by hand.
pub fn api_objects(svc: &Svc) -> [Value; 2] {
    let mut service_json = service_object(svc);
    if let Some(spec) = service_json["spec"].as_object_mut() {
        spec.remove("selector");
    }
    let addresses: Vec<Value> = svc
        .endpoints
        .iter()
        .map(|endpoint| json!({ "ip": endpoint.ip.to_string(), "nodeName": format!("node{}", endpoint.node) }))
        .collect();
    let ports: Vec<Value> = svc
        .ports
        .iter()
        .map(|port| {
            json!({
                "name": port.name,
                "port": port.target_port,
                "protocol": port.protocol.kubernetes(),
            })
        })
        .collect();
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": { "name": svc.name, "namespace": NAMESPACE },
        "subsets": [{ "addresses": addresses, "ports": ports }],
    });
    [service_json, endpoints]
}

/// The EndpointSlice of `svc` listing `endpoints` instead of its own.
pub fn endpoint_slice_object(svc: &Svc, endpoints: &[Endpoint]) -> (String, Value) {
    let endpoints: Vec<EndpointSpec> = endpoints
        .iter()
        .map(|endpoint| EndpointSpec::ready(endpoint.ip, &format!("node{}", endpoint.node)))
        .collect();
    let slice = format!("{}-bench", svc.name);
    (
        endpoint_slice_key(NAMESPACE, &slice),
        endpoint_slice(NAMESPACE, &slice, &svc.name, &port_specs(svc), &endpoints),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: u8) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint {
                ip: Ipv4Addr::new(10, 244, 2, 2 + i),
                node: 2,
            })
            .collect()
    }

    #[test]
    fn planes_never_share_a_vip_and_skiff_keeps_to_its_cidr() {
        let last = 99_999;
        assert_eq!(
            scale_vip(Plane::Skiff, last),
            Ipv4Addr::new(10, 97, 135, 159)
        );
        assert!(scale_vip(Plane::Skiff, last) < Ipv4Addr::new(10, 100, 0, 0));
        assert!(scale_vip(Plane::Iptables, last) < Ipv4Addr::new(10, 102, 0, 0));
        assert!(scale_vip(Plane::Nftables, last) < Ipv4Addr::new(10, 104, 0, 0));
    }

    #[test]
    fn scale_services_have_two_to_ten_endpoints() {
        let pool = backends(10);
        let counts: Vec<usize> = (0..9)
            .map(|i| scale_service(Plane::Skiff, i, &pool).endpoints.len())
            .collect();
        assert_eq!(counts, [2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn node_ports_make_a_node_port_service() {
        let sink = backends(1)[0];
        let svc = xdp_sink_service(sink);
        let [(key, service), (_, slice)] = etcd_objects(&svc);
        assert_eq!(key, "/registry/services/specs/bench/sink-xdp");
        assert_eq!(service["spec"]["type"], "NodePort");
        assert_eq!(service["spec"]["ports"][0]["nodePort"], XDP_SINK_NODE_PORT);
        assert_eq!(slice["endpoints"][0]["addresses"][0], "10.244.2.2");
    }

    #[test]
    fn the_remote_xdp_sink_is_a_node_port_of_its_own() {
        let sink = backends(1)[0];
        let remote = xdp_remote_sink_service(sink);
        let local = xdp_sink_service(sink);
        let [(key, service), _] = etcd_objects(&remote);
        assert_eq!(key, "/registry/services/specs/bench/sink-xdp-remote");
        assert_eq!(
            service["spec"]["ports"][0]["nodePort"],
            XDP_REMOTE_SINK_NODE_PORT
        );
        assert_ne!(remote.vip, local.vip);
    }

    #[test]
    fn api_objects_are_a_service_without_selector_and_its_endpoints() {
        let sink = backends(1)[0];
        let svc = sink_service("sink", datapath_vip(Plane::Iptables, 2), 30081, sink);
        let [service, endpoints] = api_objects(&svc);
        assert_eq!(service["spec"]["clusterIP"], "10.100.0.34");
        assert_eq!(service["spec"]["ports"][0]["nodePort"], 30081);
        assert!(service["spec"].get("selector").is_none(), "{service}");
        assert_eq!(endpoints["kind"], "Endpoints");
        assert_eq!(
            endpoints["subsets"][0],
            json!({
                "addresses": [{ "ip": "10.244.2.2", "nodeName": "node2" }],
                "ports": [{ "name": "udp", "port": SINK_PORT, "protocol": "UDP" }],
            })
        );
    }
}
