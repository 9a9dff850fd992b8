//! Translation of one Service and its EndpointSlices into the frontends the
//! cluster wants served, with the rules kube-proxy applies. Pure: no I/O, no state.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::sync::Arc;

use tracing::warn;

use super::protocol::Protocol;
use super::records::{Hints, IpFamily, ServiceRecord, ServiceType, SliceRecord, Usable};
use super::service_ref::ServiceRef;
use super::topology::{Mode, Place};
use crate::proxy::policy::{Policy, SourceCidr};

/// One address, port and protocol on which a Service is reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// The Service port's name, "" when unnamed.
    pub port_name: Arc<str>,
}

/// An endpoint address with the port the Service port targets on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendAddr {
    /// Of its frontend's family.
    pub ip: IpAddr,
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
    /// Its IPv6 address, on which NodePorts are served too.
    pub ip6: Option<Ipv6Addr>,
    /// Where this node's agent serves cluster DNS, if it does: the only
    /// backend of the cluster DNS Service's port 53 on this node.
    pub local_dns: Option<SocketAddrV4>,
    /// Its Node's `topology.kubernetes.io/zone`, for topology hints.
    pub zone: Option<&'a str>,
}

/// The cluster DNS Service (`kube-system/kube-dns`), which every agent
/// serves node-locally, as NodeLocal DNSCache does: a pod's query goes to
/// its own node's agent, never across the network.
pub const CLUSTER_DNS_NAMESPACE: &str = "kube-system";
pub const CLUSTER_DNS_NAME: &str = "kube-dns";
/// The DNS port, the one port of the cluster DNS Service served locally.
const DNS_PORT: u16 = 53;

/// The frontends of Service `svc` (whose record is `service`) as seen from
/// node `node`, with backends from `slices` (the EndpointSlices labelled
/// for it). Frontends come ordered by address, port and protocol. What the
/// datapath cannot serve (SCTP, malformed fields) was dropped when the
/// record was read; the rest still works. Each frontend balances over the
/// endpoints of its own address's family.
pub fn desired_frontends(
    svc: &ServiceRef,
    service: &ServiceRecord,
    slices: &[&SliceRecord],
    node: NodeRef<'_>,
) -> Vec<DesiredFrontend> {
    // An ExternalName Service is a DNS alias; it has no address to balance.
    if service.type_ == ServiceType::ExternalName
        || (service.cluster_ips.is_empty() && service.cluster_ips6.is_empty())
    {
        return Vec::new();
    }
    let affinity_timeout = service.affinity_timeout;
    // Cluster-wide traffic follows the endpoints' topology hints.
    let place = Place {
        node: node.name,
        zone: node.zone,
    };
    // ClusterIP traffic comes from inside the cluster, so the internal
    // policy applies: `Local` keeps it on the client's node.
    let locality = match service.internal_local {
        true => Locality::Node(node.name),
        false => Locality::Cluster(place),
    };
    let (node_ip, node_ip6) = match service.type_ {
        ServiceType::NodePort | ServiceType::LoadBalancer => (node.ip, node.ip6),
        _ => (None, None),
    };
    // Traffic from outside the cluster gets the external policy: `Local`
    // keeps it on the node it arrived at, with the client's address.
    let local_only = service.external_local;
    let external_locality = match local_only {
        true => Locality::Node(node.name),
        false => Locality::Cluster(place),
    };
    let outlier_detection = service.outlier_detection.is_some();
    let cluster_policy = Policy {
        affinity_timeout,
        outlier_detection,
        ..Policy::default()
    };
    let external_policy = |source_ranges: &[SourceCidr]| Policy {
        affinity_timeout,
        external: true,
        local_only,
        source_ranges: source_ranges.to_vec(),
        outlier_detection,
    };

    let mut desired = Vec::new();
    for service_port in &service.ports {
        let Some(port) = service_port.port else {
            continue;
        };
        let protocol = service_port.protocol;
        let port_name = &service_port.name;
        let frontend = |ip: IpAddr, port| Frontend {
            ip,
            port,
            protocol,
            port_name: port_name.clone(),
        };
        let local_dns = node.local_dns.filter(|_| {
            port == DNS_PORT
                && &*svc.namespace == CLUSTER_DNS_NAMESPACE
                && &*svc.name == CLUSTER_DNS_NAME
        });
        let cluster_backends = match local_dns {
            Some(server) => vec![BackendAddr {
                ip: (*server.ip()).into(),
                port: server.port(),
            }],
            None => backends(port_name, protocol, slices, locality, IpFamily::V4),
        };
        for &ip in &service.cluster_ips {
            desired.push(DesiredFrontend {
                frontend: frontend(ip.into(), port),
                backends: cluster_backends.clone(),
                policy: cluster_policy.clone(),
            });
        }
        if !service.cluster_ips6.is_empty() {
            let backends6 = backends(port_name, protocol, slices, locality, IpFamily::V6);
            for &ip in &service.cluster_ips6 {
                desired.push(DesiredFrontend {
                    frontend: frontend(ip.into(), port),
                    backends: backends6.clone(),
                    policy: cluster_policy.clone(),
                });
            }
        }
        // Node, load balancer and external addresses of each family the
        // Service has (a ClusterIP of), over that family's endpoints, as
        // kube-proxy's per-family proxiers. Each family's source ranges
        // guard that family's load balancer IPs only: a family without
        // ranges of its own admits every source even when the other
        // family has some, as kube-proxy's proxier of that family sees no
        // ranges at all (it drops the other family's with a log line).
        let external = |ip: IpAddr, port, ranges: &[SourceCidr], backends: &Vec<BackendAddr>| {
            DesiredFrontend {
                frontend: frontend(ip, port),
                backends: backends.clone(),
                policy: external_policy(ranges),
            }
        };
        let no_ranges: &[SourceCidr] = &[];
        let ips = |v4: &[Ipv4Addr], v6: &[Ipv6Addr]| -> [Vec<IpAddr>; 2] {
            [
                v4.iter().map(|&ip| ip.into()).collect(),
                v6.iter().map(|&ip| ip.into()).collect(),
            ]
        };
        let [load_balancer_ips, load_balancer_ips6] =
            ips(&service.load_balancer_ips, &service.load_balancer_ips6);
        let [external_ips, external_ips6] = ips(&service.external_ips, &service.external_ips6);
        let families = [
            (
                IpFamily::V4,
                !service.cluster_ips.is_empty(),
                node_ip.map(IpAddr::from),
                load_balancer_ips,
                external_ips,
            ),
            (
                IpFamily::V6,
                !service.cluster_ips6.is_empty(),
                node_ip6.map(IpAddr::from),
                load_balancer_ips6,
                external_ips6,
            ),
        ];
        for (family, has_cluster_ip, node_ip, load_balancer_ips, external_ips) in families {
            let node_port = node_ip.zip(service_port.node_port);
            let no_address = load_balancer_ips.is_empty() && external_ips.is_empty();
            if !has_cluster_ip || (node_port.is_none() && no_address) {
                continue;
            }
            let external_backends =
                backends(port_name, protocol, slices, external_locality, family);
            if let Some((ip, node_port)) = node_port {
                desired.push(external(ip, node_port, no_ranges, &external_backends));
            }
            let ranges = service.source_ranges_of(family);
            for ip in load_balancer_ips {
                desired.push(external(ip, port, ranges, &external_backends));
            }
            for ip in external_ips {
                desired.push(external(ip, port, no_ranges, &external_backends));
            }
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
    service: &ServiceRecord,
    slices: &[&SliceRecord],
    node: NodeRef<'_>,
) -> Option<HealthCheck> {
    if service.type_ != ServiceType::LoadBalancer || !service.external_local {
        return None;
    }
    let port = service.health_check_node_port?;
    // The load balancer reaches the node over IPv4: its endpoints count.
    let mut local: Vec<IpAddr> = Vec::new();
    for service_port in &service.ports {
        let endpoints = backends(
            &service_port.name,
            service_port.protocol,
            slices,
            Locality::Node(node.name),
            IpFamily::V4,
        );
        local.extend(endpoints.iter().map(|backend| backend.ip));
    }
    local.sort_unstable();
    local.dedup();
    Some(HealthCheck {
        port,
        local_endpoints: local.len(),
    })
}

/// Which endpoints a frontend may use.
#[derive(Clone, Copy, Debug)]
enum Locality<'a> {
    /// All of them, or those the topology hints give this place.
    Cluster(Place<'a>),
    /// Only those on this node.
    Node(&'a str),
}

/// The backends of one Service port, at the port the slice publishes under
/// the same port name: the ready endpoints of `family` within `locality` or, when
/// there is none, the serving-and-terminating ones (kube-proxy's fallback,
/// so a Service whose pods are all rolling over keeps answering; as in
/// kube-proxy, that fallback ignores topology).
fn backends(
    port_name: &str,
    protocol: Protocol,
    slices: &[&SliceRecord],
    locality: Locality<'_>,
    family: IpFamily,
) -> Vec<BackendAddr> {
    let mut ready: Vec<(BackendAddr, Option<&Hints>)> = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices.iter().filter(|slice| slice.family == family) {
        // The EndpointSlice controller names each slice port after the
        // Service port it resolves (both unnamed for a single-port Service).
        let Some(slice_port) = slice
            .ports
            .iter()
            .find(|p| *p.name == *port_name && p.protocol == Some(protocol))
        else {
            continue;
        };
        // No number: the target port could not be resolved (e.g. a named
        // targetPort no pod declares), so nothing can be reached through it.
        let Some(port) = slice_port.port else {
            continue;
        };
        for endpoint in &slice.endpoints {
            if let Locality::Node(node) = locality
                && slice.node_of(endpoint) != Some(node)
            {
                continue;
            }
            let backend = BackendAddr {
                ip: endpoint.ip,
                port,
            };
            match endpoint.usable {
                Usable::Ready => ready.push((backend, slice.hints_of(endpoint))),
                Usable::ServingTerminating => terminating.push(backend),
            }
        }
    }
    let mode = match locality {
        Locality::Cluster(place) => Mode::of(place, ready.iter().map(|(_, hints)| *hints)),
        Locality::Node(_) => Mode::All,
    };
    let ready: Vec<BackendAddr> = ready
        .into_iter()
        .filter(|(_, hints)| mode.admits(*hints))
        .map(|(backend, _)| backend)
        .collect();
    let mut backends = if ready.is_empty() { terminating } else { ready };
    backends.sort_unstable();
    backends.dedup();
    backends
}

#[cfg(test)]
mod tests;
