//! Translation of one Service and its EndpointSlices into the frontends the
//! datapath serves, with the rules kube-proxy applies. Pure: no I/O, no state.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::{EndpointConditions, EndpointSlice};
use tracing::{debug, warn};

use crate::datapath::{Policy, SourceCidr};

/// The label by which an EndpointSlice names the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Identity of a Service: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceRef {
    /// The reference of a Service object, from its metadata.
    pub fn of(service: &Service) -> Self {
        Self {
            namespace: service.metadata.namespace.clone().unwrap_or_default(),
            name: service.metadata.name.clone().unwrap_or_default(),
        }
    }

    /// The Service an EndpointSlice belongs to: the one its
    /// `kubernetes.io/service-name` label names, in the slice's namespace.
    /// `None` for a slice without that label (not managed for a Service).
    pub fn owning(slice: &EndpointSlice) -> Option<Self> {
        let name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some(Self {
            namespace: slice.metadata.namespace.clone().unwrap_or_default(),
            name: name.clone(),
        })
    }
}

impl fmt::Display for ServiceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Transport protocols the datapath balances.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// Reads a Kubernetes `protocol` field, where absent means TCP. `None`
    /// for SCTP and anything else the datapath does not balance.
    fn from_field(field: Option<&str>) -> Option<Self> {
        match field.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            _ => None,
        }
    }

    /// The IP protocol number, as the datapath's map keys carry it.
    pub fn ip_protocol(self) -> u8 {
        match self {
            Self::Tcp => proxy_common::PROTO_TCP,
            Self::Udp => proxy_common::PROTO_UDP,
        }
    }
}

/// One address, port and protocol on which a Service is reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// The Service port's name, "" when unnamed.
    pub port_name: String,
}

/// An endpoint address with the port the Service port targets on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendAddr {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// A frontend and the backends it balances over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredFrontend {
    pub frontend: Frontend,
    /// Sorted and deduplicated. Empty when the Service has no usable
    /// endpoint: the frontend still exists so that connects to it are
    /// refused at once instead of leaving the node to route the ClusterIP.
    pub backends: Vec<BackendAddr>,
    /// Affinity, reach from outside, traffic policy, source ranges.
    pub policy: Policy,
}

/// What a Service's `healthCheckNodePort` answers on this node
/// (`type: LoadBalancer` with `externalTrafficPolicy: Local`): a load
/// balancer sends traffic only to nodes with a local endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub port: u16,
    /// Endpoint addresses on this node that serve the Service.
    pub local_endpoints: usize,
}

/// The node whose view of the Services the agent programs.
#[derive(Clone, Copy, Debug)]
pub struct NodeRef<'a> {
    pub name: &'a str,
    /// Its address, on which NodePorts are served; `None` serves none.
    pub ip: Option<Ipv4Addr>,
}

/// kube-proxy's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;
/// The API's upper bound for it (one day).
const MAX_AFFINITY_TIMEOUT: u32 = 86_400;

/// The frontends of `service` as seen from node `node`, with backends from
/// `slices` (the EndpointSlices labelled for it). Frontends come ordered by
/// address, port and protocol. Parts the datapath cannot serve (SCTP, IPv6,
/// malformed fields) are skipped with a log line; the rest still works.
pub fn desired_frontends(
    service: &Service,
    slices: &[&EndpointSlice],
    node: NodeRef<'_>,
) -> Vec<DesiredFrontend> {
    let svc = ServiceRef::of(service);
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    // An ExternalName Service is a DNS alias; it has no address to balance.
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let ips = cluster_ips(&svc, spec);
    if ips.is_empty() {
        return Vec::new();
    }
    let affinity_timeout = affinity_timeout(spec);
    // ClusterIP traffic comes from inside the cluster, so the internal
    // policy applies: `Local` keeps it on the client's node.
    let locality = match spec.internal_traffic_policy.as_deref() {
        Some("Local") => Locality::Node(node.name),
        _ => Locality::Cluster,
    };
    let external = ExternalAddresses::of(&svc, service, node);
    // Traffic from outside the cluster gets the external policy: `Local`
    // keeps it on the node it arrived at, with the client's address.
    let local_only = spec.external_traffic_policy.as_deref() == Some("Local");
    let external_locality = match local_only {
        true => Locality::Node(node.name),
        false => Locality::Cluster,
    };
    let cluster_policy = Policy {
        affinity_timeout,
        ..Policy::default()
    };
    let external_policy = |source_ranges: &[SourceCidr]| Policy {
        affinity_timeout,
        external: true,
        local_only,
        source_ranges: source_ranges.to_vec(),
    };

    let mut desired = Vec::new();
    for service_port in spec.ports.iter().flatten() {
        let port_name = service_port.name.as_deref().unwrap_or("");
        let Some(protocol) = Protocol::from_field(service_port.protocol.as_deref()) else {
            warn!(
                service = %svc,
                port = service_port.port,
                protocol = service_port.protocol.as_deref(),
                "skipping service port with a protocol the datapath does not balance"
            );
            continue;
        };
        let Some(port) = port_number(service_port.port) else {
            warn!(service = %svc, port = service_port.port, "skipping service port out of range");
            continue;
        };
        let frontend = |ip, port| Frontend {
            ip,
            port,
            protocol,
            port_name: port_name.to_owned(),
        };
        let cluster_backends = backends(&svc, port_name, protocol, slices, locality);
        for &ip in &ips {
            desired.push(DesiredFrontend {
                frontend: frontend(ip, port),
                backends: cluster_backends.clone(),
                policy: cluster_policy.clone(),
            });
        }
        let external_backends = backends(&svc, port_name, protocol, slices, external_locality);
        let node_port = service_port.node_port.and_then(port_number);
        if let (Some(ip), Some(node_port)) = (external.node_ip, node_port) {
            desired.push(DesiredFrontend {
                frontend: frontend(ip, node_port),
                backends: external_backends.clone(),
                policy: external_policy(&[]),
            });
        }
        for &ip in &external.load_balancer_ips {
            desired.push(DesiredFrontend {
                frontend: frontend(ip, port),
                backends: external_backends.clone(),
                policy: external_policy(&external.source_ranges),
            });
        }
        for &ip in &external.external_ips {
            desired.push(DesiredFrontend {
                frontend: frontend(ip, port),
                backends: external_backends.clone(),
                policy: external_policy(&[]),
            });
        }
    }

    desired.sort_by(|a, b| a.frontend.cmp(&b.frontend));
    // The datapath keys frontends by address, port and protocol. API
    // validation forbids two ports sharing a port and protocol, but this
    // agent reads etcd directly, so keep the first (by name) rather than
    // programming one key twice.
    desired.dedup_by(|later, kept| {
        let duplicate = later.frontend.ip == kept.frontend.ip
            && later.frontend.port == kept.frontend.port
            && later.frontend.protocol == kept.frontend.protocol;
        if duplicate {
            warn!(
                service = %svc,
                port = later.frontend.port,
                port_name = %later.frontend.port_name,
                kept = %kept.frontend.port_name,
                "skipping service port that repeats another port's number and protocol"
            );
        }
        duplicate
    });
    desired
}

/// The health check a Service asks this node to answer, if any.
pub fn health_check(
    service: &Service,
    slices: &[&EndpointSlice],
    node: NodeRef<'_>,
) -> Option<HealthCheck> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() != Some("LoadBalancer")
        || spec.external_traffic_policy.as_deref() != Some("Local")
    {
        return None;
    }
    let port = spec.health_check_node_port.and_then(port_number)?;
    let svc = ServiceRef::of(service);
    let mut local: Vec<Ipv4Addr> = Vec::new();
    for service_port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::from_field(service_port.protocol.as_deref()) else {
            continue;
        };
        let port_name = service_port.name.as_deref().unwrap_or("");
        let endpoints = backends(&svc, port_name, protocol, slices, Locality::Node(node.name));
        local.extend(endpoints.iter().map(|backend| backend.ip));
    }
    local.sort_unstable();
    local.dedup();
    Some(HealthCheck {
        port,
        local_endpoints: local.len(),
    })
}

/// The addresses on which a Service takes traffic from outside the cluster.
struct ExternalAddresses {
    /// This node's address, for a NodePort or LoadBalancer Service.
    node_ip: Option<Ipv4Addr>,
    /// `status.loadBalancer.ingress[].ip` of a LoadBalancer Service.
    load_balancer_ips: Vec<Ipv4Addr>,
    /// `loadBalancerSourceRanges`, which guard the load balancer IPs.
    source_ranges: Vec<SourceCidr>,
    /// `spec.externalIPs`, for any type.
    external_ips: Vec<Ipv4Addr>,
}

impl ExternalAddresses {
    fn of(svc: &ServiceRef, service: &Service, node: NodeRef<'_>) -> Self {
        let spec = service.spec.as_ref();
        let type_ = spec.and_then(|spec| spec.type_.as_deref());
        let load_balancer = type_ == Some("LoadBalancer");
        let ingress = service
            .status
            .as_ref()
            .and_then(|status| status.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .filter(|_| load_balancer);
        let load_balancer_ips = ipv4_list(
            svc,
            "status.loadBalancer.ingress",
            ingress
                .into_iter()
                .flatten()
                .filter_map(|ingress| ingress.ip.as_deref()),
        );
        let source_ranges = match spec.and_then(|spec| spec.load_balancer_source_ranges.as_ref()) {
            Some(ranges) if load_balancer => source_cidrs(svc, ranges),
            _ => Vec::new(),
        };
        let external_ips = ipv4_list(
            svc,
            "spec.externalIPs",
            spec.and_then(|spec| spec.external_ips.as_ref())
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
        Self {
            node_ip: match type_ {
                Some("NodePort" | "LoadBalancer") => node.ip,
                _ => None,
            },
            load_balancer_ips,
            source_ranges,
            external_ips,
        }
    }
}

/// The IPv4 addresses of a list field, deduplicated; others are skipped
/// with a log line.
fn ipv4_list<'a>(
    svc: &ServiceRef,
    field: &'static str,
    raw: impl Iterator<Item = &'a str>,
) -> Vec<Ipv4Addr> {
    let mut ips = Vec::new();
    for text in raw {
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if !ips.contains(&ip) => ips.push(ip),
            Ok(IpAddr::V4(_)) => {}
            Ok(IpAddr::V6(_)) => {
                debug!(service = %svc, field, address = text, "skipping IPv6 address")
            }
            Err(_) => warn!(service = %svc, field, address = text, "skipping unparsable address"),
        }
    }
    ips
}

/// `loadBalancerSourceRanges` as IPv4 networks, sorted; IPv6 and malformed
/// entries are skipped with a log line.
fn source_cidrs(svc: &ServiceRef, ranges: &[String]) -> Vec<SourceCidr> {
    let mut cidrs = Vec::new();
    for text in ranges {
        let parsed = text.trim().split_once('/').and_then(|(network, len)| {
            let network: IpAddr = network.parse().ok()?;
            let prefix_len: u8 = len.parse().ok()?;
            Some((network, prefix_len))
        });
        match parsed {
            Some((IpAddr::V4(network), prefix_len)) if prefix_len <= 32 => {
                // Host bits are ignored, as the trie ignores them.
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix_len))
                    .unwrap_or(0);
                cidrs.push(SourceCidr {
                    network: Ipv4Addr::from(u32::from(network) & mask),
                    prefix_len,
                });
            }
            Some((IpAddr::V6(_), _)) => {
                debug!(service = %svc, range = %text, "skipping IPv6 source range")
            }
            _ => {
                warn!(service = %svc, range = %text, "skipping malformed loadBalancerSourceRanges entry")
            }
        }
    }
    cidrs.sort_unstable();
    cidrs.dedup();
    cidrs
}

fn affinity_timeout(spec: &ServiceSpec) -> Option<u32> {
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let configured = spec
        .session_affinity_config
        .as_ref()
        .and_then(|config| config.client_ip.as_ref())
        .and_then(|client_ip| client_ip.timeout_seconds)
        .and_then(|seconds| u32::try_from(seconds).ok());
    Some(
        configured
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
            .clamp(1, MAX_AFFINITY_TIMEOUT),
    )
}

/// Which endpoints a frontend may use.
#[derive(Clone, Copy, Debug)]
enum Locality<'a> {
    /// All of them.
    Cluster,
    /// Only those on this node.
    Node(&'a str),
}

/// How kube-proxy may use one endpoint, from its conditions. A nil
/// `ready` means ready; a nil `serving` means the same as `ready`; a nil
/// `terminating` means not terminating.
#[derive(Clone, Copy, Debug)]
struct Usability {
    ready: bool,
    /// Still serving while it shuts down: used only when no endpoint is ready.
    serving_terminating: bool,
}

fn usability(conditions: Option<&EndpointConditions>) -> Usability {
    let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
    let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
    let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
    Usability {
        ready,
        serving_terminating: serving && terminating,
    }
}

/// The Service's IPv4 cluster addresses, primary first. `clusterIPs` lists
/// every family's address; older objects may only have `clusterIP`.
fn cluster_ips(svc: &ServiceRef, spec: &ServiceSpec) -> Vec<Ipv4Addr> {
    let listed: Vec<&str> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect(),
        _ => spec.cluster_ip.as_deref().into_iter().collect(),
    };
    let mut ips = Vec::new();
    for raw in listed {
        // "None" marks a headless Service (DNS only); "" one not allocated yet.
        if raw.is_empty() || raw == "None" {
            continue;
        }
        match raw.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if !ips.contains(&ip) => ips.push(ip),
            Ok(IpAddr::V4(_)) => {}
            Ok(IpAddr::V6(_)) => {
                debug!(service = %svc, cluster_ip = raw, "skipping IPv6 cluster IP");
            }
            Err(_) => warn!(service = %svc, cluster_ip = raw, "skipping unparsable cluster IP"),
        }
    }
    ips
}

/// The backends of one Service port, at the port the slice publishes under
/// the same port name: the ready IPv4 endpoints within `locality` or, when
/// there is none, the serving-and-terminating ones (kube-proxy's fallback,
/// so a Service whose pods are all rolling over keeps answering).
fn backends(
    svc: &ServiceRef,
    port_name: &str,
    protocol: Protocol,
    slices: &[&EndpointSlice],
    locality: Locality<'_>,
) -> Vec<BackendAddr> {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            debug!(
                service = %svc,
                slice = slice.metadata.name.as_deref(),
                address_type = %slice.address_type,
                "skipping non-IPv4 EndpointSlice"
            );
            continue;
        }
        // The EndpointSlice controller names each slice port after the
        // Service port it resolves (both unnamed for a single-port Service).
        let Some(slice_port) = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && Protocol::from_field(p.protocol.as_deref()) == Some(protocol)
        }) else {
            continue;
        };
        // No number: the target port could not be resolved (e.g. a named
        // targetPort no pod declares), so nothing can be reached through it.
        let Some(port) = slice_port.port.and_then(port_number) else {
            continue;
        };
        for endpoint in slice.endpoints.iter().flatten() {
            if let Locality::Node(node) = locality
                && endpoint.node_name.as_deref() != Some(node)
            {
                continue;
            }
            let usability = usability(endpoint.conditions.as_ref());
            let pool = match usability {
                Usability { ready: true, .. } => &mut ready,
                Usability {
                    serving_terminating: true,
                    ..
                } => &mut terminating,
                _ => continue,
            };
            for address in &endpoint.addresses {
                match address.parse::<Ipv4Addr>() {
                    Ok(ip) => pool.push(BackendAddr { ip, port }),
                    Err(_) => warn!(
                        service = %svc,
                        slice = slice.metadata.name.as_deref(),
                        address = %address,
                        "skipping unparsable endpoint address"
                    ),
                }
            }
        }
    }
    let mut backends = if ready.is_empty() { terminating } else { ready };
    backends.sort_unstable();
    backends.dedup();
    backends
}

/// A port number from the API's `int32`, if it is a usable port.
fn port_number(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    fn service(spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": { "namespace": "default", "name": "web" },
            "spec": spec,
        }))
        .unwrap()
    }

    fn slice(name: &str, address_type: &str, ports: Value, endpoints: Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {
                "namespace": "default",
                "name": name,
                "labels": { SERVICE_NAME_LABEL: "web" },
            },
            "addressType": address_type,
            "ports": ports,
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn ready(addresses: &[&str]) -> Value {
        json!({ "addresses": addresses, "conditions": { "ready": true } })
    }

    fn backend(ip: &str, port: u16) -> BackendAddr {
        BackendAddr {
            ip: ip.parse().unwrap(),
            port,
        }
    }

    fn frontend(ip: &str, port: u16, protocol: Protocol, port_name: &str) -> Frontend {
        Frontend {
            ip: ip.parse().unwrap(),
            port,
            protocol,
            port_name: port_name.to_owned(),
        }
    }

    fn unnamed_http() -> Value {
        json!({ "clusterIP": "10.96.0.10", "ports": [{ "port": 80, "targetPort": 8080 }] })
    }

    fn unnamed_slice(name: &str, endpoints: Value) -> EndpointSlice {
        slice(
            name,
            "IPv4",
            json!([{ "port": 8080, "protocol": "TCP" }]),
            endpoints,
        )
    }

    fn node(name: &str) -> NodeRef<'_> {
        NodeRef { name, ip: None }
    }

    #[test]
    fn node_ports_are_served_on_the_node_address_with_every_endpoint() {
        let mut spec = unnamed_http();
        spec["type"] = json!("NodePort");
        spec["internalTrafficPolicy"] = json!("Local");
        spec["ports"][0]["nodePort"] = json!(30080);
        let svc = service(spec);
        let s = unnamed_slice(
            "web-a",
            json!([
                endpoint("10.244.1.2", "node1", json!({ "ready": true })),
                endpoint("10.244.2.2", "node2", json!({ "ready": true })),
            ]),
        );
        let here = NodeRef {
            name: "node1",
            ip: Some("172.30.0.11".parse().unwrap()),
        };
        let desired = desired_frontends(&svc, &[&s], here);
        assert_eq!(desired.len(), 2);
        assert_eq!(
            desired[1].frontend,
            frontend("172.30.0.11", 30080, Protocol::Tcp, "")
        );
        assert_eq!(desired[1].backends.len(), 2);
        // The ClusterIP keeps its internal policy.
        assert_eq!(backend_ips(&desired), ["10.244.1.2"]);
        // Without a node address, or for a ClusterIP Service, no NodePort.
        assert_eq!(desired_frontends(&svc, &[&s], node("node1")).len(), 1);
    }

    fn load_balancer_service(extra: Value) -> Service {
        let mut spec = unnamed_http();
        spec["type"] = json!("LoadBalancer");
        spec["ports"][0]["nodePort"] = json!(30080);
        spec["externalIPs"] = json!(["172.18.0.10", "fd00::10"]);
        spec["loadBalancerSourceRanges"] = json!(["192.0.2.7/24", "2001:db8::/32", "bogus"]);
        for (field, value) in extra.as_object().unwrap() {
            spec[field] = value.clone();
        }
        let mut svc = service(spec);
        svc.status = serde_json::from_value(json!({
            "loadBalancer": { "ingress": [{ "ip": "172.18.255.10" }, { "hostname": "lb.example" }] }
        }))
        .unwrap();
        svc
    }

    fn two_nodes_slice() -> EndpointSlice {
        unnamed_slice(
            "web-a",
            json!([
                endpoint("10.244.1.2", "node1", json!({ "ready": true })),
                endpoint("10.244.2.2", "node2", json!({ "ready": true })),
            ]),
        )
    }

    fn here() -> NodeRef<'static> {
        NodeRef {
            name: "node1",
            ip: Some("172.30.0.11".parse().unwrap()),
        }
    }

    #[test]
    fn load_balancer_ips_external_ips_and_node_ports_are_external_frontends() {
        let slice = two_nodes_slice();
        let desired = desired_frontends(&load_balancer_service(json!({})), &[&slice], here());
        let by_ip: BTreeMap<String, &DesiredFrontend> = desired
            .iter()
            .map(|d| (d.frontend.ip.to_string(), d))
            .collect();
        assert_eq!(
            by_ip.keys().map(String::as_str).collect::<Vec<_>>(),
            ["10.96.0.10", "172.18.0.10", "172.18.255.10", "172.30.0.11"]
        );
        assert!(!by_ip["10.96.0.10"].policy.external);
        let allowed = vec![SourceCidr {
            network: "192.0.2.0".parse().unwrap(),
            prefix_len: 24,
        }];
        for (ip, ranges) in [
            ("172.18.0.10", vec![]),
            ("172.18.255.10", allowed),
            ("172.30.0.11", vec![]),
        ] {
            let frontend = by_ip[ip];
            assert!(
                frontend.policy.external && !frontend.policy.local_only,
                "{ip}"
            );
            assert_eq!(frontend.policy.source_ranges, ranges, "{ip}");
            assert_eq!(frontend.backends.len(), 2, "{ip}");
        }
    }

    #[test]
    fn external_traffic_policy_local_keeps_external_frontends_to_local_endpoints() {
        let slice = two_nodes_slice();
        let svc = load_balancer_service(json!({
            "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 32000,
        }));
        for d in desired_frontends(&svc, &[&slice], here()) {
            let ips: Vec<String> = d.backends.iter().map(|b| b.ip.to_string()).collect();
            if d.policy.external {
                assert!(d.policy.local_only);
                assert_eq!(ips, ["10.244.1.2"], "{:?}", d.frontend);
            } else {
                assert_eq!(ips, ["10.244.1.2", "10.244.2.2"], "the ClusterIP keeps all");
            }
        }
        assert_eq!(
            health_check(&svc, &[&slice], here()),
            Some(HealthCheck {
                port: 32000,
                local_endpoints: 1
            })
        );
        let elsewhere = NodeRef {
            name: "node3",
            ..here()
        };
        assert_eq!(
            health_check(&svc, &[&slice], elsewhere).map(|check| check.local_endpoints),
            Some(0)
        );
        // No health check for the Cluster policy.
        let cluster = load_balancer_service(json!({ "healthCheckNodePort": 32000 }));
        assert_eq!(health_check(&cluster, &[&slice], here()), None);
    }

    fn endpoint(address: &str, node: &str, conditions: Value) -> Value {
        json!({ "addresses": [address], "nodeName": node, "conditions": conditions })
    }

    fn backend_ips(desired: &[DesiredFrontend]) -> Vec<String> {
        desired[0]
            .backends
            .iter()
            .map(|b| b.ip.to_string())
            .collect()
    }

    #[test]
    fn serving_terminating_endpoints_are_used_only_when_none_is_ready() {
        let svc = service(unnamed_http());
        let terminating = json!({ "ready": false, "serving": true, "terminating": true });
        let gone = json!({ "ready": false, "serving": false, "terminating": true });
        let only_terminating = unnamed_slice(
            "web-a",
            json!([
                endpoint("10.244.1.2", "node1", terminating.clone()),
                endpoint("10.244.1.3", "node1", gone.clone()),
            ]),
        );
        let desired = desired_frontends(&svc, &[&only_terminating], node("node1"));
        assert_eq!(backend_ips(&desired), ["10.244.1.2"]);

        let with_ready = unnamed_slice(
            "web-a",
            json!([
                endpoint("10.244.1.2", "node1", terminating),
                endpoint("10.244.1.3", "node1", gone),
                endpoint("10.244.2.2", "node2", json!({ "ready": true })),
            ]),
        );
        let desired = desired_frontends(&svc, &[&with_ready], node("node1"));
        assert_eq!(backend_ips(&desired), ["10.244.2.2"]);
    }

    #[test]
    fn internal_traffic_policy_local_keeps_only_this_nodes_endpoints() {
        let mut spec = unnamed_http();
        spec["internalTrafficPolicy"] = json!("Local");
        let svc = service(spec);
        let s = unnamed_slice(
            "web-a",
            json!([
                endpoint("10.244.1.2", "node1", json!({ "ready": true })),
                endpoint("10.244.2.2", "node2", json!({ "ready": true })),
                // A ready endpoint elsewhere does not stop the local
                // terminating one from serving.
                endpoint("10.244.2.3", "node2", json!({ "ready": true })),
                endpoint(
                    "10.244.3.2",
                    "node3",
                    json!({ "ready": false, "serving": true, "terminating": true }),
                ),
            ]),
        );
        assert_eq!(
            backend_ips(&desired_frontends(&svc, &[&s], node("node1"))),
            ["10.244.1.2"]
        );
        assert_eq!(
            backend_ips(&desired_frontends(&svc, &[&s], node("node2"))),
            ["10.244.2.2", "10.244.2.3"]
        );
        assert_eq!(
            backend_ips(&desired_frontends(&svc, &[&s], node("node3"))),
            ["10.244.3.2"]
        );
        // No local endpoint: the frontend stays, with nothing to send to.
        assert!(
            desired_frontends(&svc, &[&s], node("node4"))[0]
                .backends
                .is_empty()
        );
    }

    #[test]
    fn client_ip_affinity_carries_its_timeout() {
        let mut spec = unnamed_http();
        assert_eq!(
            desired_frontends(&service(spec.clone()), &[], node("node1"))[0]
                .policy
                .affinity_timeout,
            None
        );
        spec["sessionAffinity"] = json!("ClientIP");
        assert_eq!(
            desired_frontends(&service(spec.clone()), &[], node("node1"))[0]
                .policy
                .affinity_timeout,
            Some(10_800)
        );
        spec["sessionAffinityConfig"] = json!({ "clientIP": { "timeoutSeconds": 5 } });
        assert_eq!(
            desired_frontends(&service(spec), &[], node("node1"))[0]
                .policy
                .affinity_timeout,
            Some(5)
        );
    }

    #[test]
    fn cluster_ip_service_merges_two_slices_sorted_and_deduplicated() {
        let svc = service(unnamed_http());
        let a = unnamed_slice(
            "web-a",
            json!([ready(&["10.244.2.5"]), ready(&["10.244.1.7"])]),
        );
        // The same endpoint in two slices (a moment during a slice split)
        // must give one backend.
        let b = unnamed_slice(
            "web-b",
            json!([ready(&["10.244.1.3"]), ready(&["10.244.2.5"])]),
        );
        let desired = desired_frontends(&svc, &[&a, &b], node("node1"));
        assert_eq!(
            desired,
            vec![DesiredFrontend {
                frontend: frontend("10.96.0.10", 80, Protocol::Tcp, ""),
                backends: vec![
                    backend("10.244.1.3", 8080),
                    backend("10.244.1.7", 8080),
                    backend("10.244.2.5", 8080),
                ],
                policy: Policy::default(),
            }]
        );
    }

    #[test]
    fn named_ports_each_use_their_own_slice_port() {
        let svc = service(json!({
            "clusterIP": "10.96.0.20",
            "ports": [
                { "name": "https", "port": 443, "targetPort": "tls" },
                { "name": "http", "port": 80, "targetPort": 8080 },
            ],
        }));
        let s = slice(
            "web-a",
            "IPv4",
            json!([{ "name": "http", "port": 8080 }, { "name": "https", "port": 8443 }]),
            json!([ready(&["10.244.1.3"])]),
        );
        let desired = desired_frontends(&svc, &[&s], node("node1"));
        assert_eq!(
            desired,
            vec![
                DesiredFrontend {
                    frontend: frontend("10.96.0.20", 80, Protocol::Tcp, "http"),
                    backends: vec![backend("10.244.1.3", 8080)],
                    policy: Policy::default(),
                },
                DesiredFrontend {
                    frontend: frontend("10.96.0.20", 443, Protocol::Tcp, "https"),
                    backends: vec![backend("10.244.1.3", 8443)],
                    policy: Policy::default(),
                },
            ]
        );
    }

    #[test]
    fn unnamed_single_port_matches_unnamed_slice_port() {
        let svc = service(unnamed_http());
        // `name: ""` and an absent name are the same unnamed port.
        let s = slice(
            "web-a",
            "IPv4",
            json!([{ "name": "", "port": 9090 }]),
            json!([ready(&["10.244.1.3"])]),
        );
        let desired = desired_frontends(&svc, &[&s], node("node1"));
        assert_eq!(desired.len(), 1);
        assert_eq!(desired[0].backends, vec![backend("10.244.1.3", 9090)]);
    }

    #[test]
    fn not_ready_endpoint_is_excluded_and_absent_ready_included() {
        let svc = service(unnamed_http());
        let s = unnamed_slice(
            "web-a",
            json!([
                { "addresses": ["10.244.1.1"], "conditions": { "ready": false, "serving": true, "terminating": true } },
                { "addresses": ["10.244.1.2"], "conditions": {} },
                { "addresses": ["10.244.1.3"] },
                ready(&["10.244.1.4"]),
            ]),
        );
        let desired = desired_frontends(&svc, &[&s], node("node1"));
        assert_eq!(
            desired[0].backends,
            vec![
                backend("10.244.1.2", 8080),
                backend("10.244.1.3", 8080),
                backend("10.244.1.4", 8080),
            ]
        );
    }

    #[test]
    fn every_address_of_an_endpoint_is_a_backend_and_bad_ones_are_skipped() {
        let svc = service(unnamed_http());
        let s = unnamed_slice(
            "web-a",
            json!([ready(&["10.244.1.9", "not-an-ip", "10.244.1.8"])]),
        );
        let desired = desired_frontends(&svc, &[&s], node("node1"));
        assert_eq!(
            desired[0].backends,
            vec![backend("10.244.1.8", 8080), backend("10.244.1.9", 8080)]
        );
    }

    #[test]
    fn headless_and_external_name_have_no_frontends() {
        let headless = service(json!({
            "clusterIP": "None",
            "clusterIPs": ["None"],
            "ports": [{ "port": 80 }],
        }));
        let external = service(json!({
            "type": "ExternalName",
            "externalName": "example.invalid",
            "ports": [{ "port": 80 }],
        }));
        let unallocated = service(json!({ "clusterIP": "", "ports": [{ "port": 80 }] }));
        let s = unnamed_slice("web-a", json!([ready(&["10.244.1.3"])]));
        for svc in [headless, external, unallocated] {
            assert_eq!(desired_frontends(&svc, &[&s], node("node1")), vec![]);
        }
    }

    #[test]
    fn service_without_spec_has_no_frontends() {
        let svc: Service = serde_json::from_value(json!({
            "metadata": { "namespace": "default", "name": "web" },
        }))
        .unwrap();
        assert_eq!(desired_frontends(&svc, &[], node("node1")), vec![]);
    }

    #[test]
    fn udp_port_matches_only_udp_slice_port() {
        let svc = service(json!({
            "clusterIP": "10.96.0.53",
            "ports": [
                { "name": "dns", "port": 53, "protocol": "UDP" },
                { "name": "dns-tcp", "port": 53, "protocol": "TCP" },
            ],
        }));
        let s = slice(
            "dns-a",
            "IPv4",
            json!([
                { "name": "dns", "port": 5353, "protocol": "UDP" },
                { "name": "dns-tcp", "port": 5354, "protocol": "TCP" },
            ]),
            json!([ready(&["10.244.1.3"])]),
        );
        let desired = desired_frontends(&svc, &[&s], node("node1"));
        assert_eq!(
            desired,
            vec![
                DesiredFrontend {
                    frontend: frontend("10.96.0.53", 53, Protocol::Tcp, "dns-tcp"),
                    backends: vec![backend("10.244.1.3", 5354)],
                    policy: Policy::default(),
                },
                DesiredFrontend {
                    frontend: frontend("10.96.0.53", 53, Protocol::Udp, "dns"),
                    backends: vec![backend("10.244.1.3", 5353)],
                    policy: Policy::default(),
                },
            ]
        );
    }

    #[test]
    fn slice_port_with_other_protocol_does_not_match() {
        let svc = service(json!({
            "clusterIP": "10.96.0.53",
            "ports": [{ "name": "dns", "port": 53, "protocol": "UDP" }],
        }));
        let s = slice(
            "dns-a",
            "IPv4",
            json!([{ "name": "dns", "port": 5353 }]),
            json!([ready(&["10.244.1.3"])]),
        );
        let desired = desired_frontends(&svc, &[&s], node("node1"));
        assert_eq!(desired.len(), 1);
        assert_eq!(desired[0].backends, vec![]);
    }

    #[test]
    fn sctp_port_is_skipped_other_ports_kept() {
        let svc = service(json!({
            "clusterIP": "10.96.0.30",
            "ports": [
                { "name": "sig", "port": 3868, "protocol": "SCTP" },
                { "name": "http", "port": 80 },
            ],
        }));
        let desired = desired_frontends(&svc, &[], node("node1"));
        assert_eq!(desired.len(), 1);
        assert_eq!(
            desired[0].frontend,
            frontend("10.96.0.30", 80, Protocol::Tcp, "http")
        );
    }

    #[test]
    fn ipv6_slice_and_cluster_ip_are_ignored() {
        let svc = service(json!({
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10", "fd00:10:96::a"],
            "ipFamilies": ["IPv4", "IPv6"],
            "ports": [{ "port": 80 }],
        }));
        let v6 = slice(
            "web-v6",
            "IPv6",
            json!([{ "port": 8080 }]),
            json!([ready(&["fd00:10:244::3"])]),
        );
        let v4 = unnamed_slice("web-v4", json!([ready(&["10.244.1.3"])]));
        let desired = desired_frontends(&svc, &[&v6, &v4], node("node1"));
        assert_eq!(
            desired,
            vec![DesiredFrontend {
                frontend: frontend("10.96.0.10", 80, Protocol::Tcp, ""),
                backends: vec![backend("10.244.1.3", 8080)],
                policy: Policy::default(),
            }]
        );
    }

    #[test]
    fn every_ipv4_cluster_ip_gets_every_port() {
        let svc = service(json!({
            "clusterIP": "10.96.0.11",
            "clusterIPs": ["10.96.0.11", "10.96.0.12"],
            "ports": [{ "port": 80 }],
        }));
        let s = unnamed_slice("web-a", json!([ready(&["10.244.1.3"])]));
        let ips: Vec<_> = desired_frontends(&svc, &[&s], node("node1"))
            .into_iter()
            .map(|d| (d.frontend.ip, d.backends.len()))
            .collect();
        assert_eq!(
            ips,
            vec![
                ("10.96.0.11".parse().unwrap(), 1),
                ("10.96.0.12".parse().unwrap(), 1)
            ]
        );
    }

    #[test]
    fn cluster_ip_alone_is_used_when_cluster_ips_is_absent() {
        let desired = desired_frontends(&service(unnamed_http()), &[], node("node1"));
        assert_eq!(desired[0].frontend.ip, Ipv4Addr::new(10, 96, 0, 10));
    }

    #[test]
    fn port_name_mismatch_leaves_frontend_with_no_backends() {
        let svc = service(json!({
            "clusterIP": "10.96.0.10",
            "ports": [{ "name": "http", "port": 80 }],
        }));
        let s = slice(
            "web-a",
            "IPv4",
            json!([{ "name": "metrics", "port": 9100 }]),
            json!([ready(&["10.244.1.3"])]),
        );
        assert_eq!(
            desired_frontends(&svc, &[&s], node("node1")),
            vec![DesiredFrontend {
                frontend: frontend("10.96.0.10", 80, Protocol::Tcp, "http"),
                backends: vec![],
                policy: Policy::default(),
            }]
        );
    }

    #[test]
    fn service_without_slices_has_frontend_with_no_backends() {
        let desired = desired_frontends(&service(unnamed_http()), &[], node("node1"));
        assert_eq!(desired.len(), 1);
        assert!(desired[0].backends.is_empty());
    }

    #[test]
    fn slice_port_without_number_gives_no_backends() {
        let svc = service(unnamed_http());
        let s = slice(
            "web-a",
            "IPv4",
            json!([{ "protocol": "TCP" }]),
            json!([ready(&["10.244.1.3"])]),
        );
        assert!(
            desired_frontends(&svc, &[&s], node("node1"))[0]
                .backends
                .is_empty()
        );
    }

    #[test]
    fn repeated_port_and_protocol_is_programmed_once() {
        let svc = service(json!({
            "clusterIP": "10.96.0.10",
            "ports": [{ "name": "b", "port": 80 }, { "name": "a", "port": 80 }],
        }));
        let desired = desired_frontends(&svc, &[], node("node1"));
        assert_eq!(desired.len(), 1);
        assert_eq!(desired[0].frontend.port_name, "a");
    }

    #[test]
    fn service_ref_display_and_slice_owner() {
        let s = unnamed_slice("web-a", json!([]));
        let owner = ServiceRef::owning(&s).unwrap();
        assert_eq!(owner.to_string(), "default/web");
        assert_eq!(owner, ServiceRef::of(&service(unnamed_http())));
        let unlabelled: EndpointSlice = serde_json::from_value(json!({
            "metadata": { "namespace": "default", "name": "manual" },
            "addressType": "IPv4",
            "endpoints": [],
        }))
        .unwrap();
        assert_eq!(ServiceRef::owning(&unlabelled), None);
    }

    #[test]
    fn protocol_numbers_match_the_datapath() {
        assert_eq!(Protocol::Tcp.ip_protocol(), 6);
        assert_eq!(Protocol::Udp.ip_protocol(), 17);
    }
}
