//! Kubernetes objects as the API server stores them in etcd: the JSON of a
//! Service or EndpointSlice under Kubernetes' own key layout. Built here
//! from plain values so the tests exercise the agent's decoding of real
//! Kubernetes JSON, not a shared Rust type.
use std::net::Ipv4Addr;

use serde_json::{Value, json};
use skiff_etcd::keys::{ENDPOINT_SLICES, SERVICES, object_key};

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
        "endpoints": endpoints.iter().map(|e| json!({
            "addresses": [e.ip.to_string()],
            "nodeName": e.node,
            "conditions": {
                "ready": e.ready,
                "serving": e.serving,
                "terminating": e.terminating,
            },
        })).collect::<Vec<_>>(),
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
