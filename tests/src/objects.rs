//! Kubernetes objects as the API server stores them in etcd: the JSON of a
//! Service, EndpointSlice or Node under Kubernetes' own key layout. Built here
//! from plain values so the tests exercise the agent's decoding of real
//! Kubernetes JSON, not a shared Rust type.
use std::net::Ipv4Addr;

use serde_json::{Value, json};
use skiff_etcd::keys::{ENDPOINT_SLICES, NODES, SERVICES, object_key};

/// The Node label holding its zone (`cargo xtask up --zones`).
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// One port of a Service, and the target port its endpoints listen on.
#[derive(Debug, Clone)]
pub struct PortSpec {
    pub name: &'static str,
    pub protocol: &'static str,
    pub port: u16,
    pub target_port: u16,
}

/// One endpoint of an EndpointSlice: a pod's address, its node and its
/// conditions, as the EndpointSlice controller reports them.
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    pub ip: Ipv4Addr,
    pub node: String,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// The endpoint's `zone`.
    pub zone: Option<String>,
    /// Its `hints`, as the EndpointSlice controller writes them.
    pub hints: Hints,
}

/// Which topology hints an endpoint carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hints {
    None,
    /// `forZones`: its zone (PreferSameZone).
    Zone,
    /// `forZones` and `forNodes`: its zone and node (PreferSameNode).
    ZoneAndNode,
}

impl EndpointSpec {
    /// A running pod that passes its readiness probe.
    pub fn ready(ip: Ipv4Addr, node: &str) -> EndpointSpec {
        EndpointSpec {
            ip,
            node: node.to_owned(),
            ready: true,
            serving: true,
            terminating: false,
            zone: None,
            hints: Hints::None,
        }
    }

    /// This endpoint in `zone`, with `hints`.
    pub fn in_zone(self, zone: &str, hints: Hints) -> EndpointSpec {
        EndpointSpec {
            zone: Some(zone.to_owned()),
            hints,
            ..self
        }
    }

    /// A running pod failing its readiness probe.
    pub fn not_ready(ip: Ipv4Addr, node: &str) -> EndpointSpec {
        EndpointSpec {
            ready: false,
            serving: false,
            ..EndpointSpec::ready(ip, node)
        }
    }

    /// A pod shutting down, still `serving` or not.
    pub fn terminating(ip: Ipv4Addr, node: &str, serving: bool) -> EndpointSpec {
        EndpointSpec {
            ready: false,
            serving,
            terminating: true,
            ..EndpointSpec::ready(ip, node)
        }
    }
}

pub fn service_key(namespace: &str, name: &str) -> String {
    object_key(SERVICES, Some(namespace), name)
}

pub fn endpoint_slice_key(namespace: &str, name: &str) -> String {
    object_key(ENDPOINT_SLICES, Some(namespace), name)
}

pub fn service(namespace: &str, name: &str, cluster_ip: Ipv4Addr, ports: &[PortSpec]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip.to_string(),
            "clusterIPs": [cluster_ip.to_string()],
            "selector": { "app": name },
            "ports": ports.iter().map(|p| json!({
                "name": p.name,
                "protocol": p.protocol,
                "port": p.port,
                "targetPort": p.target_port,
            })).collect::<Vec<_>>(),
        },
    })
}

/// An EndpointSlice of `service`, as the EndpointSlice controller writes it.
pub fn endpoint_slice(
    namespace: &str,
    name: &str,
    service: &str,
    ports: &[PortSpec],
    endpoints: &[EndpointSpec],
) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { "kubernetes.io/service-name": service },
        },
        "addressType": "IPv4",
        "ports": ports.iter().map(|p| json!({
            "name": p.name,
            "protocol": p.protocol,
            "port": p.target_port,
        })).collect::<Vec<_>>(),
        "endpoints": endpoints.iter().map(endpoint).collect::<Vec<_>>(),
    })
}

fn endpoint(spec: &EndpointSpec) -> Value {
    let mut endpoint = json!({
        "addresses": [spec.ip.to_string()],
        "nodeName": spec.node,
        "conditions": {
            "ready": spec.ready,
            "serving": spec.serving,
            "terminating": spec.terminating,
        },
    });
    if let Some(zone) = &spec.zone {
        endpoint["zone"] = json!(zone);
    }
    let for_zones = json!([{ "name": spec.zone }]);
    let for_nodes = json!([{ "name": spec.node }]);
    match spec.hints {
        Hints::None => {}
        Hints::Zone => endpoint["hints"] = json!({ "forZones": for_zones }),
        Hints::ZoneAndNode => {
            endpoint["hints"] = json!({ "forZones": for_zones, "forNodes": for_nodes })
        }
    }
    endpoint
}

pub fn node_key(name: &str) -> String {
    object_key(NODES, None, name)
}

/// Node `name` as registered, labelled with `zone` when there is one.
pub fn node(name: &str, zone: Option<&str>) -> Value {
    let mut labels = json!({ "kubernetes.io/hostname": name });
    if let Some(zone) = zone {
        labels[ZONE_LABEL] = json!(zone);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": labels },
    })
}

/// Pod `name` in `default` with `spec`, bound to node1 (`spec.nodeName`
/// set, as the scheduler leaves it) and Pending, as the API server stores
/// it; its uid is unique to this process.
pub fn bound_pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["nodeName"] = json!("node1");
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": format!("uid-{name}-{}", std::process::id()),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
        "status": { "phase": "Pending" },
    })
}
