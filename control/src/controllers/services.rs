//! What a Service's selector picks: the pods behind it, their conditions
//! and their ports (a named targetPort resolved per pod). Shared by the
//! EndpointSlice and the Endpoints controllers.

use serde_json::{Value, json};

use super::meta;
use crate::alloc::IpFamily;

/// One pod behind a Service.
pub struct Backend<'a> {
    pub pod: &'a Value,
    pub ip: &'a str,
    /// In rotation: Ready and not terminating (or the Service publishes
    /// pods that are not ready).
    pub ready: bool,
    /// Ready, terminating or not.
    pub serving: bool,
    pub terminating: bool,
    /// The Service's ports as this pod serves them (EndpointPort objects).
    pub ports: Vec<Value>,
}

/// Whether the Service has its endpoints managed: a selector, and not an
/// ExternalName.
pub fn selects(service: &Value) -> bool {
    service["spec"]["type"].as_str() != Some("ExternalName")
        && service["spec"]["selector"]
            .as_object()
            .is_some_and(|selector| !selector.is_empty())
}

/// The address families of the Service's endpoints, as
/// kube-controller-manager reads them: its `ipFamilies`; else (a Service
/// stored before they existed) its ClusterIP's, or both for a headless one.
pub fn address_families(service: &Value) -> Vec<IpFamily> {
    let families: Vec<IpFamily> = service["spec"]["ipFamilies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|family| IpFamily::parse(family.as_str()?))
        .collect();
    if !families.is_empty() {
        return families;
    }
    match service["spec"]["clusterIP"].as_str() {
        Some(ip) if !ip.is_empty() && ip != "None" => {
            vec![ip.parse().map_or(IpFamily::Ipv4, IpFamily::of)]
        }
        _ => vec![IpFamily::Ipv4, IpFamily::Ipv6],
    }
}

/// The pod's address of `family`: from `status.podIPs`, else `podIP`.
fn pod_ip(pod: &Value, family: IpFamily) -> Option<&str> {
    let status = &pod["status"];
    let listed = status["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["ip"].as_str());
    listed
        .chain(status["podIP"].as_str())
        .find(|ip| ip.parse().is_ok_and(|ip| IpFamily::of(ip) == family))
}

/// The pods of `pods` (those of the Service's namespace) behind `service`
/// with their addresses of `family`, in address order; pods without one,
/// or finished, are left out.
pub fn backends<'a>(service: &Value, pods: &'a [Value], family: IpFamily) -> Vec<Backend<'a>> {
    let selector = &service["spec"]["selector"];
    let publish = service["spec"]["publishNotReadyAddresses"].as_bool() == Some(true);
    let mut backends: Vec<Backend> = pods
        .iter()
        .filter(|pod| meta::map_matches(selector, &pod["metadata"]["labels"]))
        .filter(|pod| !meta::pod_finished(pod))
        .filter_map(|pod| {
            let ip = pod_ip(pod, family)?;
            let serving = meta::pod_ready(pod);
            let terminating = meta::is_terminating(pod);
            Some(Backend {
                pod,
                ip,
                // Kubernetes: never ready while terminating, unless the
                // Service publishes addresses that are not ready.
                ready: publish || (serving && !terminating),
                serving,
                terminating,
                ports: ports(service, pod),
            })
        })
        .collect();
    backends.sort_by(|a, b| a.ip.cmp(b.ip));
    backends
}

/// The Service's ports with each targetPort resolved against `pod`; a
/// named targetPort the pod has no container port for is left out.
fn ports(service: &Value, pod: &Value) -> Vec<Value> {
    let mut resolved = Vec::new();
    for port in service["spec"]["ports"].as_array().into_iter().flatten() {
        let number = match &port["targetPort"] {
            Value::Number(number) => number.as_i64(),
            Value::String(name) => match name.parse::<i64>() {
                Ok(number) => Some(number),
                Err(_) => container_port(pod, name),
            },
            _ => port["port"].as_i64(),
        };
        let Some(number) = number else { continue };
        let mut endpoint_port = json!({
            "name": port["name"].as_str().unwrap_or_default(),
            "port": number,
            "protocol": port["protocol"].as_str().unwrap_or("TCP"),
        });
        if let Some(app_protocol) = port["appProtocol"].as_str() {
            endpoint_port["appProtocol"] = json!(app_protocol);
        }
        resolved.push(endpoint_port);
    }
    resolved
}

/// The containerPort named `name` in any of the pod's containers.
fn container_port(pod: &Value, name: &str) -> Option<i64> {
    pod["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|container| container["ports"].as_array().into_iter().flatten())
        .find(|port| port["name"].as_str() == Some(name))?["containerPort"]
        .as_i64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, port_name: &str, port: i64) -> Value {
        json!({
            "metadata": { "name": name, "labels": { "app": "web" } },
            "spec": { "containers": [{ "ports": [{ "name": port_name, "containerPort": port }] }] },
            "status": {
                "podIP": ip,
                "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            },
        })
    }

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let service = json!({ "spec": {
            "selector": { "app": "web" },
            "ports": [
                { "name": "http", "port": 80, "targetPort": "web" },
                { "name": "metrics", "port": 9000 },
            ],
        } });
        let pods = vec![
            pod("b", "10.244.1.3", true, "web", 8080),
            pod("a", "10.244.1.2", false, "web", 8081),
            pod("c", "10.244.1.4", true, "other", 1),
        ];
        let backends = backends(&service, &pods, IpFamily::Ipv4);
        assert_eq!(backends.len(), 3);
        assert_eq!(backends[0].ip, "10.244.1.2");
        assert!(!backends[0].ready && !backends[0].serving);
        assert_eq!(backends[0].ports[0]["port"], 8081);
        assert_eq!(backends[1].ports[0]["port"], 8080);
        assert_eq!(
            backends[1].ports[1],
            json!({ "name": "metrics", "port": 9000, "protocol": "TCP" })
        );
        assert_eq!(backends[2].ports.len(), 1, "the named port is missing");
        assert!(super::backends(&service, &pods, IpFamily::Ipv6).is_empty());
    }

    #[test]
    fn each_family_takes_the_pods_address_of_that_family() {
        let service =
            json!({ "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80 }] } });
        let mut dual = pod("a", "10.244.1.2", true, "web", 80);
        dual["status"]["podIPs"] = json!([{ "ip": "10.244.1.2" }, { "ip": "fd00:10:244:1::2" }]);
        let pods = [dual];
        assert_eq!(
            backends(&service, &pods, IpFamily::Ipv4)[0].ip,
            "10.244.1.2"
        );
        assert_eq!(
            backends(&service, &pods, IpFamily::Ipv6)[0].ip,
            "fd00:10:244:1::2"
        );
    }

    #[test]
    fn address_families_of_services_old_and_new() {
        let families = |spec: Value| address_families(&json!({ "spec": spec }));
        let (v4, v6) = (IpFamily::Ipv4, IpFamily::Ipv6);
        assert_eq!(
            families(json!({ "ipFamilies": ["IPv6", "IPv4"] })),
            [v6, v4]
        );
        assert_eq!(families(json!({ "clusterIP": "fd00::7" })), [v6]);
        assert_eq!(families(json!({ "clusterIP": "10.96.0.7" })), [v4]);
        assert_eq!(families(json!({ "clusterIP": "None" })), [v4, v6]);
    }
}
