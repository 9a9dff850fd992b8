//! Reading a Service's JSON: the fields its allocations and updates depend
//! on, defaulted as the API reads them.

use serde_json::{Value, json};

/// `spec.type`, defaulted.
pub(super) fn service_type(service: &Value) -> &str {
    service["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

pub(super) fn ports(service: &Value) -> &[Value] {
    service["spec"]["ports"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub(super) fn ingress(service: &Value) -> &[Value] {
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A port's `nodePort`, if set (0 means unset).
pub(super) fn node_port(port: &Value) -> Option<u16> {
    port["nodePort"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .filter(|&port| port != 0)
}

pub(super) fn health_check_node_port(service: &Value) -> Option<u16> {
    service["spec"]["healthCheckNodePort"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .filter(|&port| port != 0)
}

/// Whether the server picks NodePorts the client left out: NodePort
/// Services, and LoadBalancers unless `allocateLoadBalancerNodePorts` is
/// false.
pub(super) fn needs_node_ports(service: &Value) -> bool {
    match service_type(service) {
        "NodePort" => true,
        "LoadBalancer" => service["spec"]["allocateLoadBalancerNodePorts"] != json!(false),
        _ => false,
    }
}

/// LoadBalancers that keep traffic on the receiving node need a port for
/// the load balancer's health checks.
pub(super) fn needs_health_check_node_port(service: &Value) -> bool {
    service_type(service) == "LoadBalancer"
        && service["spec"]["externalTrafficPolicy"].as_str() == Some("Local")
}
