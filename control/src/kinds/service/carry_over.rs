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
    } else if old_type != "ExternalName" {
        normalize_cluster_ips(old_spec, &mut new["spec"]);
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

/// What a client that sends `clusterIP` and `clusterIPs` (or only the
/// first, an older one) means on an update, as kube-apiserver reads it, and
/// the ClusterIPs the client left out kept.
fn normalize_cluster_ips(old: &Value, new: &mut Value) {
    if !new.is_object() {
        return;
    }
    let ip = |spec: &Value| spec["clusterIP"].as_str().unwrap_or_default().to_owned();
    let ips = |spec: &Value| spec["clusterIPs"].as_array().cloned().unwrap_or_default();
    let (old_ip, new_ip) = (ip(old), ip(new));
    if !ips(old).is_empty() && ips(new).is_empty() && old_ip == new_ip {
        new["clusterIPs"] = old["clusterIPs"].clone();
    }
    if old_ip != new_ip && ips(old) == ips(new) {
        if !old_ip.is_empty()
            && new_ip.is_empty()
            && let Some(spec) = new.as_object_mut()
        {
            spec.remove("clusterIPs");
        }
        if !new_ip.is_empty() {
            new["clusterIPs"] = json!([new_ip]);
        }
    }
    if new_ip.is_empty() && !old_ip.is_empty() {
        new["clusterIP"] = json!(old_ip);
    }
    if ips(new).is_empty() && !ips(old).is_empty() {
        new["clusterIPs"] = old["clusterIPs"].clone();
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
