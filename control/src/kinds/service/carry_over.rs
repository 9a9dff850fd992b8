//! A Service's update keeps what the server gave the stored Service
//! (kube-apiserver's Service registry `PrepareForUpdate`).

use serde_json::{Value, json};

use super::fields::{
    health_check_node_port, needs_health_check_node_port, needs_node_ports, node_port, ports,
    service_type,
};

/// Carries what `old` was given over to its update `new` where the client
/// left the field out, and drops what the new type no longer uses, as
/// kube-apiserver's Service registry does. `new` is defaulted.
pub fn carry_over(old: &Value, new: &mut Value) {
    let old_type = service_type(old);
    let new_type = service_type(new).to_owned();
    let old_spec = &old["spec"];
    if new_type == "ExternalName" {
        // Nothing IP-related survives becoming an ExternalName Service,
        // unless the client changed it (then validation says no).
        if let Some(spec) = new["spec"].as_object_mut() {
            for field in [
                "clusterIP",
                "clusterIPs",
                "ipFamilies",
                "ipFamilyPolicy",
                "internalTrafficPolicy",
            ] {
                if spec.get(field) == old_spec.get(field) {
                    spec.remove(field);
                }
            }
        }
    } else if old_type != "ExternalName"
        && new["spec"]["clusterIP"].as_str().is_none_or(str::is_empty)
        && old_spec["clusterIP"].is_string()
    {
        new["spec"]["clusterIP"] = old_spec["clusterIP"].clone();
        new["spec"]["clusterIPs"] = old_spec["clusterIPs"].clone();
    }

    let (old_needs, new_needs) = (needs_node_ports(old), needs_node_ports(new));
    let old_ports = ports(old).to_vec();
    if let Some(new_ports) = new["spec"]["ports"].as_array_mut() {
        for port in new_ports.iter_mut() {
            let previous = old_ports
                .iter()
                .find(|o| o["port"] == port["port"] && o["protocol"] == port["protocol"])
                .and_then(node_port);
            match (node_port(port), previous) {
                (None, Some(previous)) if old_needs && new_needs => {
                    port["nodePort"] = json!(previous);
                }
                (Some(current), Some(previous)) if current == previous && !new_needs => {
                    if let Some(port) = port.as_object_mut() {
                        port.remove("nodePort");
                    }
                }
                _ => {}
            }
        }
    }

    let previous = health_check_node_port(old);
    match (health_check_node_port(new), previous) {
        (None, Some(previous)) if needs_health_check_node_port(new) => {
            new["spec"]["healthCheckNodePort"] = json!(previous);
        }
        (Some(current), Some(previous))
            if current == previous && !needs_health_check_node_port(new) =>
        {
            if let Some(spec) = new["spec"].as_object_mut() {
                spec.remove("healthCheckNodePort");
            }
        }
        _ => {}
    }

    // Fields only some types have go when the type no longer has them,
    // unless the client set them anew (then validation says no).
    let mut drop_if_unchanged = Vec::new();
    if !externally_accessible(new) {
        drop_if_unchanged.push("externalTrafficPolicy");
    }
    if new_type != "LoadBalancer" {
        drop_if_unchanged.push("allocateLoadBalancerNodePorts");
    }
    if let Some(spec) = new["spec"].as_object_mut() {
        for field in drop_if_unchanged {
            if spec.get(field) == old_spec.get(field) {
                spec.remove(field);
            }
        }
    }

    if old_type == "LoadBalancer" && new_type != "LoadBalancer" && new["status"].is_object() {
        new["status"]["loadBalancer"] = json!({});
    }
}

/// Reachable from outside the cluster: kube-apiserver allows
/// `externalTrafficPolicy` only then.
fn externally_accessible(service: &Value) -> bool {
    let external_ips = service["spec"]["externalIPs"]
        .as_array()
        .is_some_and(|ips| !ips.is_empty());
    match service_type(service) {
        "NodePort" | "LoadBalancer" => true,
        "ClusterIP" => external_ips,
        _ => false,
    }
}
