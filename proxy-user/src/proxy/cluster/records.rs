//! What the agent keeps of a Service and of an EndpointSlice: only the
//! fields its frontends, health checks and cluster DNS are computed from, parsed once
//! when the object arrives. The agent caches every Service of the cluster,
//! so whole API objects (labels, annotations, selectors, target refs...)
//! would cost kilobytes each; a record costs tens of bytes per endpoint.
//!
//! Fields are read from the stored Kubernetes JSON directly, through
//! borrowing serde structs that name only what is kept: the rest is
//! skipped by the parser, never allocated.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use proxy_common::outlier_annotation;
use serde::Deserialize;
use tracing::{debug, warn};

use super::protocol::Protocol;
use super::service_ref::ServiceRef;
use crate::proxy::outlier::OutlierConfig;
use crate::proxy::policy::SourceCidr;

/// The label by which an EndpointSlice names the Service it belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The Node label holding its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The taint the cluster autoscaler puts on a node it is about to remove.
const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// kube-proxy's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;
/// The API's upper bound for it (one day).
const MAX_AFFINITY_TIMEOUT: u32 = 86_400;

/// A Service's `spec.type`. Absent or unknown types behave as `ClusterIP`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceType {
    #[default]
    ClusterIp,
    NodePort,
    LoadBalancer,
    /// A DNS alias: nothing to balance.
    ExternalName,
}

/// What the agent keeps of a Service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceRecord {
    pub type_: ServiceType,
    /// The IPv4 cluster addresses, primary first, deduplicated. Empty for
    /// a headless Service or one not allocated yet.
    pub cluster_ips: Box<[Ipv4Addr]>,
    /// The IPv6 cluster addresses (a dual-stack or IPv6 Service's).
    pub cluster_ips6: Box<[Ipv6Addr]>,
    /// The ports the datapath can balance (TCP and UDP).
    pub ports: Box<[ServicePort]>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
    /// Seconds of `ClientIP` session affinity, `None` without affinity.
    pub affinity_timeout: Option<u32>,
    /// `status.loadBalancer.ingress[].ip`, for `type: LoadBalancer` only,
    /// without those whose `ipMode` is `Proxy`: there the load balancer
    /// proxies to the nodes, and a node must not take its address for itself.
    pub load_balancer_ips: Box<[Ipv4Addr]>,
    /// The IPv6 ones, the same way.
    pub load_balancer_ips6: Box<[Ipv6Addr]>,
    /// `loadBalancerSourceRanges`, for `type: LoadBalancer` only: IPv4 and
    /// IPv6 networks in one list, sorted, so every IPv4 one comes first
    /// (`source_ranges_of` splits them by family).
    pub source_ranges: Box<[SourceCidr]>,
    /// `spec.externalIPs`, IPv4 and IPv6.
    pub external_ips: Box<[Ipv4Addr]>,
    pub external_ips6: Box<[Ipv6Addr]>,
    pub health_check_node_port: Option<u16>,
    /// `clusterIP: None`: DNS answers with the ready endpoints.
    pub headless: bool,
    /// `spec.externalName` of an ExternalName Service (DNS answers a CNAME).
    pub external_name: Option<Box<str>>,
    /// The `skiff.io/outlier-detection` annotation, when it turns passive
    /// health on.
    pub outlier_detection: Option<OutlierConfig>,
    /// `metadata.uid`, kept only with `outlier_detection`: the ejection
    /// Events name the Service by it, so `kubectl describe` lists them.
    pub uid: Option<Box<str>>,
}

/// One TCP or UDP port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// "" when unnamed. Shared with every frontend made from this port.
    pub name: Arc<str>,
    pub protocol: Protocol,
    /// `None` when out of range: the port has no frontend.
    pub port: Option<u16>,
    pub node_port: Option<u16>,
}

/// An EndpointSlice's `addressType`, and a frontend's address family: a
/// frontend's backends come from the slices of its own family only, as
/// kube-proxy runs one proxier per family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    #[default]
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }
}

/// What the agent keeps of an EndpointSlice. A slice of another address
/// type (FQDN) keeps only its owner: nothing in it is usable.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceRecord {
    /// The Service its `kubernetes.io/service-name` label names.
    pub service: Option<Arc<str>>,
    /// `addressType`: the family of every address in `endpoints`.
    pub family: IpFamily,
    pub ports: Box<[SlicePort]>,
    /// The node names `endpoints` refer to, each once.
    pub nodes: Box<[Box<str>]>,
    /// One entry per usable address: ready, or serving while terminating.
    /// Endpoints that are neither can never be a backend and are dropped.
    pub endpoints: Box<[EndpointAddr]>,
    /// The `hostname`s `endpoints` refer to (cluster DNS names them).
    pub hostnames: Box<[Box<str>]>,
    /// The topology hints `endpoints` refer to.
    pub hints: Box<[Hints]>,
}

/// An endpoint's `hints`: the zones and nodes it should serve.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    pub zones: Box<[Box<str>]>,
    pub nodes: Box<[Box<str>]>,
}

/// What the agent keeps of its own Node: its zone, and whether it should
/// still receive load-balanced traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// The `topology.kubernetes.io/zone` label; `None` when absent or empty.
    pub zone: Option<Box<str>>,
    /// Neither being deleted (a deletionTimestamp) nor tainted
    /// `ToBeDeletedByClusterAutoscaler` (KEP-3836): load balancers probing
    /// kube-proxy's `/healthz` drain the node otherwise.
    pub eligible: bool,
}

/// A Node not seen yet: no zone, and eligible, as kube-proxy's is.
impl Default for NodeRecord {
    fn default() -> Self {
        NodeRecord {
            zone: None,
            eligible: true,
        }
    }
}

/// One port of an EndpointSlice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlicePort {
    /// "" when unnamed.
    pub name: Box<str>,
    /// `None` for a protocol the datapath does not balance.
    pub protocol: Option<Protocol>,
    /// `None` when absent (the target port could not be resolved) or out
    /// of range.
    pub port: Option<u16>,
}

/// One address of an endpoint, with what kube-proxy needs of the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointAddr {
    /// Of the slice's family.
    pub ip: IpAddr,
    /// Index into the slice's `nodes`; `None` when the endpoint names no node.
    pub node: Option<u16>,
    /// Index into the slice's `hostnames`; `None` when the endpoint has none.
    pub hostname: Option<u16>,
    /// Index into the slice's `hints`; `None` when the endpoint has none.
    pub hints: Option<u16>,
    pub usable: Usable,
}

/// How kube-proxy may use an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usable {
    Ready,
    /// Still serving while it shuts down: used only when no endpoint is ready.
    ServingTerminating,
}

impl SliceRecord {
    /// The node an endpoint address is on.
    pub fn node_of(&self, endpoint: &EndpointAddr) -> Option<&str> {
        endpoint
            .node
            .and_then(|index| self.nodes.get(usize::from(index)))
            .map(|name| &**name)
    }

    /// The hostname an endpoint address publishes.
    pub fn hostname_of(&self, endpoint: &EndpointAddr) -> Option<&str> {
        endpoint
            .hostname
            .and_then(|index| self.hostnames.get(usize::from(index)))
            .map(|name| &**name)
    }

    /// The topology hints an endpoint address carries.
    pub fn hints_of(&self, endpoint: &EndpointAddr) -> Option<&Hints> {
        endpoint
            .hints
            .and_then(|index| self.hints.get(usize::from(index)))
    }
}

impl ServiceRecord {
    /// Reads the Service stored as `json`; `svc` names it in log lines
    /// about fields that are skipped.
    pub fn from_json(svc: &ServiceRef, json: &[u8]) -> Result<Self, serde_json::Error> {
        Self::read_wire(svc, serde_json::from_slice(json)?)
    }

    /// The `loadBalancerSourceRanges` of one family: what guards that
    /// family's load balancer IPs, as kube-proxy's per-family proxiers each
    /// take only their own family's ranges (`MapCIDRsByIPFamily`).
    pub fn source_ranges_of(&self, family: IpFamily) -> &[SourceCidr] {
        let ipv6_from = self
            .source_ranges
            .partition_point(|cidr| cidr.network.is_ipv4());
        match family {
            IpFamily::V4 => &self.source_ranges[..ipv6_from],
            IpFamily::V6 => &self.source_ranges[ipv6_from..],
        }
    }

    fn read_wire(svc: &ServiceRef, wire: wire::Service<'_>) -> Result<Self, serde_json::Error> {
        wire::check_kind(&wire.api_version, &wire.kind, "v1", "Service")?;
        let (outlier_detection, uid) = match wire.metadata {
            Some(metadata) => {
                let outlier_detection = metadata
                    .annotations
                    .and_then(|annotations| annotations.outlier_detection)
                    .and_then(|value| outlier_settings(svc, &value));
                let uid = metadata
                    .uid
                    .filter(|_| outlier_detection.is_some())
                    .map(|uid| uid.into());
                (outlier_detection, uid)
            }
            None => (None, None),
        };
        Ok(Self {
            outlier_detection,
            uid,
            ..wire.spec.map_or_else(Self::default, |spec| {
                Self::of(svc, spec, wire.status.unwrap_or_default())
            })
        })
    }

    fn of(svc: &ServiceRef, spec: wire::ServiceSpec<'_>, status: wire::ServiceStatus<'_>) -> Self {
        let type_ = match spec.type_.as_deref() {
            Some("NodePort") => ServiceType::NodePort,
            Some("LoadBalancer") => ServiceType::LoadBalancer,
            Some("ExternalName") => ServiceType::ExternalName,
            _ => ServiceType::ClusterIp,
        };
        let load_balancer = type_ == ServiceType::LoadBalancer;
        let ingress = status
            .load_balancer
            .and_then(|lb| lb.ingress)
            .filter(|_| load_balancer)
            .unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        let external_name = match type_ {
            ServiceType::ExternalName => spec.external_name.map(|name| name.into()),
            _ => None,
        };
        let (cluster_ips, cluster_ips6) = cluster_ips(svc, spec.cluster_ip, spec.cluster_ips);
        let (load_balancer_ips, load_balancer_ips6) = ip_lists(
            svc,
            "status.loadBalancer.ingress",
            ingress
                .into_iter()
                .filter(|ingress| ingress.ip_mode.as_deref() != Some("Proxy"))
                .filter_map(|ingress| ingress.ip),
        );
        let source_ranges = match spec.load_balancer_source_ranges {
            Some(ranges) if load_balancer => source_cidrs(svc, &ranges),
            _ => Box::default(),
        };
        let (external_ips, external_ips6) = ip_lists(
            svc,
            "spec.externalIPs",
            spec.external_ips.into_iter().flatten(),
        );
        Self {
            type_,
            headless,
            external_name,
            cluster_ips,
            cluster_ips6,
            ports: spec
                .ports
                .into_iter()
                .flatten()
                .filter_map(|port| service_port(svc, port))
                .collect(),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            affinity_timeout: affinity_timeout(
                spec.session_affinity.as_deref(),
                spec.session_affinity_config,
            ),
            load_balancer_ips,
            load_balancer_ips6,
            source_ranges,
            external_ips,
            external_ips6,
            health_check_node_port: spec.health_check_node_port.and_then(port_number),
            outlier_detection: None,
            uid: None,
        }
    }
}

impl SliceRecord {
    /// Reads the EndpointSlice stored as `json`; `slice` names it in log
    /// lines about fields that are skipped.
    pub fn from_json(slice: &ServiceRef, json: &[u8]) -> Result<Self, serde_json::Error> {
        Self::read_wire(slice, serde_json::from_slice(json)?)
    }

    fn read_wire(
        slice: &ServiceRef,
        wire: wire::EndpointSlice<'_>,
    ) -> Result<Self, serde_json::Error> {
        wire::check_kind(
            &wire.api_version,
            &wire.kind,
            "discovery.k8s.io/v1",
            "EndpointSlice",
        )?;
        let service = wire
            .metadata
            .and_then(|metadata| metadata.labels)
            .and_then(|mut labels| labels.remove(SERVICE_NAME_LABEL))
            .map(|name| Arc::from(&*name));
        let family = match &*wire.address_type {
            "IPv4" => IpFamily::V4,
            "IPv6" => IpFamily::V6,
            _ => {
                debug!(
                    %slice,
                    address_type = %wire.address_type,
                    "skipping the endpoints of an EndpointSlice of neither IP family"
                );
                return Ok(Self {
                    service,
                    ..Self::default()
                });
            }
        };
        let ports = wire
            .ports
            .into_iter()
            .flatten()
            .map(|port| SlicePort {
                name: port.name.as_deref().unwrap_or("").into(),
                protocol: Protocol::from_field(port.protocol.as_deref()),
                port: port.port.and_then(port_number),
            })
            .collect();
        let mut nodes: Vec<Box<str>> = Vec::new();
        let mut hostnames: Vec<Box<str>> = Vec::new();
        let mut hints: Vec<Hints> = Vec::new();
        let mut endpoints = Vec::new();
        for endpoint in wire.endpoints.into_iter().flatten() {
            let Some(usable) = usability(endpoint.conditions.unwrap_or_default()) else {
                continue;
            };
            let node = endpoint.node_name.map(|name| {
                let index = nodes.iter().position(|known| **known == *name);
                index.unwrap_or_else(|| {
                    nodes.push(name.into());
                    nodes.len() - 1
                })
            });
            // A slice holds at most 1000 endpoints, so far fewer nodes.
            let node = node.and_then(|index| u16::try_from(index).ok());
            let hostname = endpoint
                .hostname
                .filter(|name| !name.is_empty())
                .map(|name| {
                    hostnames.push(name.into());
                    hostnames.len() - 1
                });
            let hostname = hostname.and_then(|index| u16::try_from(index).ok());
            let hint = endpoint
                .hints
                .map(wire::EndpointHints::into_hints)
                .map(|read| {
                    hints.push(read);
                    hints.len() - 1
                });
            let hint = hint.and_then(|index| u16::try_from(index).ok());
            for address in &endpoint.addresses {
                match address
                    .parse::<IpAddr>()
                    .ok()
                    .filter(|ip| IpFamily::of(ip) == family)
                {
                    Some(ip) => endpoints.push(EndpointAddr {
                        ip,
                        node,
                        hostname,
                        hints: hint,
                        usable,
                    }),
                    None => warn!(
                        %slice,
                        address = %address,
                        address_type = %wire.address_type,
                        "skipping an endpoint address that is not of the slice's address type"
                    ),
                }
            }
        }
        Ok(Self {
            service,
            family,
            ports,
            nodes: nodes.into(),
            endpoints: endpoints.into(),
            hostnames: hostnames.into(),
            hints: hints.into(),
        })
    }
}

impl NodeRecord {
    /// Reads the Node stored as `json`.
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        Self::read_wire(serde_json::from_slice(json)?)
    }

    fn read_wire(wire: wire::Node<'_>) -> Result<Self, serde_json::Error> {
        wire::check_kind(&wire.api_version, &wire.kind, "v1", "Node")?;
        let metadata = wire.metadata.unwrap_or_default();
        let zone = metadata
            .labels
            .and_then(|mut labels| labels.remove(ZONE_LABEL))
            .filter(|zone| !zone.is_empty())
            .map(|zone| zone.into());
        let tainted = wire
            .spec
            .and_then(|spec| spec.taints)
            .into_iter()
            .flatten()
            .any(|taint| taint.key == TO_BE_DELETED_TAINT);
        Ok(Self {
            zone,
            eligible: metadata.deletion_timestamp.is_none() && !tainted,
        })
    }
}

/// A record read from an object that names itself, as the API server's
/// do (etcd's name theirs by key instead): its namespace, name and
/// resourceVersion, and the record, or why the object could not be read
/// as one. Deserialized straight from the API server's JSON by the parser
/// the etcd watch uses, so no object is decoded twice.
#[derive(Clone, Debug)]
pub struct Named<R> {
    /// Namespace ("" for a Node) and name.
    pub name: ServiceRef,
    pub resource_version: Option<Box<str>>,
    pub record: Result<R, Arc<serde_json::Error>>,
}

/// A record kind, read from its borrowing wire form.
pub trait FromWire<'de>: Sized {
    type Wire: Deserialize<'de> + wire::Identified;
    fn from_wire(name: &ServiceRef, wire: Self::Wire) -> Result<Self, serde_json::Error>;
}

impl<'de> FromWire<'de> for ServiceRecord {
    type Wire = wire::Service<'de>;
    fn from_wire(name: &ServiceRef, wire: Self::Wire) -> Result<Self, serde_json::Error> {
        Self::read_wire(name, wire)
    }
}

impl<'de> FromWire<'de> for SliceRecord {
    type Wire = wire::EndpointSlice<'de>;
    fn from_wire(name: &ServiceRef, wire: Self::Wire) -> Result<Self, serde_json::Error> {
        Self::read_wire(name, wire)
    }
}

impl<'de> FromWire<'de> for NodeRecord {
    type Wire = wire::Node<'de>;
    fn from_wire(_: &ServiceRef, wire: Self::Wire) -> Result<Self, serde_json::Error> {
        Self::read_wire(wire)
    }
}

impl<'de, R: FromWire<'de>> Deserialize<'de> for Named<R> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = R::Wire::deserialize(deserializer)?;
        let [namespace, name, resource_version] = wire::Identified::identity(&wire);
        let name = ServiceRef {
            namespace: namespace.unwrap_or_default().into(),
            name: name.unwrap_or_default().into(),
        };
        let resource_version = resource_version.map(Box::from);
        Ok(Named {
            record: R::from_wire(&name, wire).map_err(Arc::new),
            name,
            resource_version,
        })
    }
}

/// The outlier detection the annotation's `value` asks for; a value it
/// cannot read is logged and leaves detection off.
fn outlier_settings(svc: &ServiceRef, value: &str) -> Option<OutlierConfig> {
    outlier_annotation::parse(value)
        .inspect_err(|error| {
            warn!(service = %svc, annotation = outlier_annotation::ANNOTATION, %value, %error, "ignoring an invalid annotation: outlier detection stays off");
        })
        .ok()
        .flatten()
        .map(OutlierConfig::from)
}

/// How kube-proxy may use an endpoint, from its conditions; `None` when it
/// may not. A nil `ready` means ready; a nil `serving` means the same as
/// `ready`; a nil `terminating` means not terminating.
fn usability(conditions: wire::Conditions) -> Option<Usable> {
    let ready = conditions.ready.unwrap_or(true);
    let serving = conditions.serving.unwrap_or(ready);
    let terminating = conditions.terminating.unwrap_or(false);
    match (ready, serving && terminating) {
        (true, _) => Some(Usable::Ready),
        (false, true) => Some(Usable::ServingTerminating),
        (false, false) => None,
    }
}

/// A Service port the datapath can balance; others are skipped with a
/// log line.
fn service_port(svc: &ServiceRef, port: wire::ServicePort<'_>) -> Option<ServicePort> {
    let Some(protocol) = Protocol::from_field(port.protocol.as_deref()) else {
        warn!(
            service = %svc,
            port = port.port,
            protocol = port.protocol.as_deref(),
            "skipping service port with a protocol the datapath does not balance"
        );
        return None;
    };
    let number = port_number(port.port);
    if number.is_none() {
        warn!(service = %svc, port = port.port, "skipping service port out of range");
    }
    Some(ServicePort {
        name: port.name.as_deref().unwrap_or("").into(),
        protocol,
        port: number,
        node_port: port.node_port.and_then(port_number),
    })
}

/// The Service's IPv4 and IPv6 cluster addresses, primary first.
/// `clusterIPs` lists every family's address; older objects may only have
/// `clusterIP`.
fn cluster_ips(
    svc: &ServiceRef,
    cluster_ip: Option<Cow<'_, str>>,
    cluster_ips: Option<Vec<Cow<'_, str>>>,
) -> (Box<[Ipv4Addr]>, Box<[Ipv6Addr]>) {
    let listed: Vec<Cow<'_, str>> = match cluster_ips {
        Some(ips) if !ips.is_empty() => ips,
        _ => cluster_ip.into_iter().collect(),
    };
    let mut ips = Vec::new();
    let mut ips6 = Vec::new();
    for raw in &listed {
        // "None" marks a headless Service (DNS only); "" one not allocated yet.
        if raw.is_empty() || raw == "None" {
            continue;
        }
        match raw.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if !ips.contains(&ip) => ips.push(ip),
            Ok(IpAddr::V6(ip)) if !ips6.contains(&ip) => ips6.push(ip),
            Ok(_) => {}
            Err(_) => warn!(service = %svc, cluster_ip = %raw, "skipping unparsable cluster IP"),
        }
    }
    (ips.into(), ips6.into())
}

/// The IPv4 and IPv6 addresses of a list field, each deduplicated;
/// unparsable ones are skipped with a log line.
fn ip_lists<'a>(
    svc: &ServiceRef,
    field: &'static str,
    raw: impl Iterator<Item = Cow<'a, str>>,
) -> (Box<[Ipv4Addr]>, Box<[Ipv6Addr]>) {
    let mut ips = Vec::new();
    let mut ips6 = Vec::new();
    for text in raw {
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) if !ips.contains(&ip) => ips.push(ip),
            Ok(IpAddr::V6(ip)) if !ips6.contains(&ip) => ips6.push(ip),
            Ok(_) => {}
            Err(_) => warn!(service = %svc, field, address = %text, "skipping unparsable address"),
        }
    }
    (ips.into(), ips6.into())
}

/// `loadBalancerSourceRanges` as IPv4 and IPv6 networks, host bits
/// cleared (as the trie ignores them), sorted and deduplicated; malformed
/// entries are skipped with a log line.
fn source_cidrs(svc: &ServiceRef, ranges: &[Cow<'_, str>]) -> Box<[SourceCidr]> {
    let mut cidrs = Vec::new();
    for text in ranges {
        let parsed = text.trim().split_once('/').and_then(|(network, len)| {
            let network: IpAddr = network.parse().ok()?;
            let prefix_len: u8 = len.parse().ok()?;
            Some((network, prefix_len))
        });
        let network = match parsed {
            Some((IpAddr::V4(network), prefix_len @ 0..=32)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix_len));
                let network = Ipv4Addr::from_bits(network.to_bits() & mask.unwrap_or(0));
                Some((IpAddr::V4(network), prefix_len))
            }
            Some((IpAddr::V6(network), prefix_len @ 0..=128)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix_len));
                let network = Ipv6Addr::from_bits(network.to_bits() & mask.unwrap_or(0));
                Some((IpAddr::V6(network), prefix_len))
            }
            _ => None,
        };
        match network {
            Some((network, prefix_len)) => cidrs.push(SourceCidr {
                network,
                prefix_len,
            }),
            None => {
                warn!(service = %svc, range = %text, "skipping malformed loadBalancerSourceRanges entry")
            }
        }
    }
    cidrs.sort_unstable();
    cidrs.dedup();
    cidrs.into()
}

fn affinity_timeout(
    session_affinity: Option<&str>,
    config: Option<wire::SessionAffinityConfig>,
) -> Option<u32> {
    if session_affinity != Some("ClientIP") {
        return None;
    }
    let configured = config
        .and_then(|config| config.client_ip)
        .and_then(|client_ip| client_ip.timeout_seconds)
        .and_then(|seconds| u32::try_from(seconds).ok());
    Some(
        configured
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
            .clamp(1, MAX_AFFINITY_TIMEOUT),
    )
}

/// A port number from the API's `int32`, if it is a usable port.
pub fn port_number(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|&p| p != 0)
}

/// The stored JSON, as far as the records need it. Strings borrow from
/// the input unless they hold escapes.
pub mod wire {
    use super::*;

    /// An object's namespace, name and resourceVersion, from its metadata.
    pub trait Identified {
        fn identity(&self) -> [Option<&str>; 3];
    }

    macro_rules! named {
        ($($kind:ident),*) => {$(
            impl Identified for $kind<'_> {
                fn identity(&self) -> [Option<&str>; 3] {
                    let metadata = self.metadata.as_ref();
                    [
                        metadata.and_then(|m| m.namespace.as_deref()),
                        metadata.and_then(|m| m.name.as_deref()),
                        metadata.and_then(|m| m.resource_version.as_deref()),
                    ]
                }
            }
        )*};
    }
    named!(Service, EndpointSlice, Node);

    /// Like the API types, a stored object may omit `apiVersion` and
    /// `kind`, but not name another type: a Pod is not read as a Service.
    pub fn check_kind(
        api_version: &Option<Cow<'_, str>>,
        kind: &Option<Cow<'_, str>>,
        want_api_version: &str,
        want_kind: &str,
    ) -> Result<(), serde_json::Error> {
        use serde::de::{Error as _, Unexpected};
        for (field, want) in [(api_version, want_api_version), (kind, want_kind)] {
            if let Some(found) = field.as_deref()
                && found != want
            {
                return Err(serde_json::Error::invalid_value(
                    Unexpected::Str(found),
                    &want,
                ));
            }
        }
        Ok(())
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Service<'a> {
        #[serde(borrow)]
        pub api_version: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub metadata: Option<ServiceMetadata<'a>>,
        #[serde(borrow)]
        pub spec: Option<ServiceSpec<'a>>,
        #[serde(borrow)]
        pub status: Option<ServiceStatus<'a>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ServiceSpec<'a> {
        #[serde(borrow, rename = "type")]
        pub type_: Option<Cow<'a, str>>,
        #[serde(borrow, rename = "clusterIP")]
        pub cluster_ip: Option<Cow<'a, str>>,
        #[serde(borrow, rename = "clusterIPs")]
        pub cluster_ips: Option<Vec<Cow<'a, str>>>,
        #[serde(borrow)]
        pub ports: Option<Vec<ServicePort<'a>>>,
        #[serde(borrow)]
        pub internal_traffic_policy: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub external_traffic_policy: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub session_affinity: Option<Cow<'a, str>>,
        pub session_affinity_config: Option<SessionAffinityConfig>,
        #[serde(borrow)]
        pub load_balancer_source_ranges: Option<Vec<Cow<'a, str>>>,
        #[serde(borrow, rename = "externalIPs")]
        pub external_ips: Option<Vec<Cow<'a, str>>>,
        pub health_check_node_port: Option<i32>,
        #[serde(borrow)]
        pub external_name: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ServicePort<'a> {
        #[serde(borrow)]
        pub name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub protocol: Option<Cow<'a, str>>,
        pub port: i32,
        pub node_port: Option<i32>,
    }

    #[derive(Deserialize)]
    pub struct SessionAffinityConfig {
        #[serde(rename = "clientIP")]
        pub client_ip: Option<ClientIpConfig>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ClientIpConfig {
        pub timeout_seconds: Option<i32>,
    }

    #[derive(Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ServiceStatus<'a> {
        #[serde(borrow)]
        pub load_balancer: Option<LoadBalancerStatus<'a>>,
    }

    #[derive(Deserialize)]
    pub struct LoadBalancerStatus<'a> {
        #[serde(borrow)]
        pub ingress: Option<Vec<Ingress<'a>>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Ingress<'a> {
        #[serde(borrow)]
        pub ip: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub ip_mode: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Node<'a> {
        #[serde(borrow)]
        pub api_version: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub metadata: Option<NodeMetadata<'a>>,
        #[serde(borrow)]
        pub spec: Option<NodeSpec<'a>>,
    }

    #[derive(Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct NodeMetadata<'a> {
        #[serde(borrow)]
        pub name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub namespace: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub resource_version: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub labels: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
        #[serde(borrow)]
        pub deletion_timestamp: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    pub struct NodeSpec<'a> {
        #[serde(borrow)]
        pub taints: Option<Vec<Taint<'a>>>,
    }

    #[derive(Deserialize)]
    pub struct Taint<'a> {
        #[serde(borrow)]
        pub key: Cow<'a, str>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct EndpointSlice<'a> {
        #[serde(borrow)]
        pub api_version: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub metadata: Option<Metadata<'a>>,
        #[serde(borrow)]
        pub address_type: Cow<'a, str>,
        #[serde(borrow)]
        pub ports: Option<Vec<EndpointPort<'a>>>,
        #[serde(borrow)]
        pub endpoints: Option<Vec<Endpoint<'a>>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ServiceMetadata<'a> {
        #[serde(borrow)]
        pub uid: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub namespace: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub resource_version: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub annotations: Option<ServiceAnnotations<'a>>,
    }

    /// The one annotation the agent reads; the others are skipped unread.
    #[derive(Deserialize)]
    pub struct ServiceAnnotations<'a> {
        #[serde(borrow, rename = "skiff.io/outlier-detection")]
        pub outlier_detection: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Metadata<'a> {
        #[serde(borrow)]
        pub name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub namespace: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub resource_version: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub labels: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    }

    #[derive(Deserialize)]
    pub struct EndpointPort<'a> {
        #[serde(borrow)]
        pub name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub protocol: Option<Cow<'a, str>>,
        pub port: Option<i32>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Endpoint<'a> {
        #[serde(borrow)]
        pub addresses: Vec<Cow<'a, str>>,
        #[serde(borrow)]
        pub node_name: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pub hostname: Option<Cow<'a, str>>,
        pub conditions: Option<Conditions>,
        #[serde(borrow)]
        pub hints: Option<EndpointHints<'a>>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub struct EndpointHints<'a> {
        #[serde(borrow)]
        pub for_zones: Option<Vec<ForName<'a>>>,
        #[serde(borrow)]
        pub for_nodes: Option<Vec<ForName<'a>>>,
    }

    /// A `forZones` or `forNodes` entry.
    #[derive(Deserialize)]
    pub struct ForName<'a> {
        #[serde(borrow)]
        pub name: Cow<'a, str>,
    }

    impl EndpointHints<'_> {
        pub fn into_hints(self) -> Hints {
            let names = |list: Option<Vec<ForName<'_>>>| {
                list.into_iter()
                    .flatten()
                    .map(|entry| entry.name.into())
                    .collect()
            };
            Hints {
                zones: names(self.for_zones),
                nodes: names(self.for_nodes),
            }
        }
    }

    #[derive(Default, Deserialize)]
    pub struct Conditions {
        pub ready: Option<bool>,
        pub serving: Option<bool>,
        pub terminating: Option<bool>,
    }
}
