//! kube-apiserver's `SetDefaults_Service`, applied to the raw JSON.

use serde_json::{Map, Value};

const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i64 = 10800;

fn is_unset(map: &Map<String, Value>, key: &str) -> bool {
    map.get(key).is_none_or(Value::is_null)
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    if is_unset(map, key) {
        map.insert(key.to_owned(), value.into());
    }
}

/// The object at `map[key]`, created (replacing `null`) if missing. `None` if
/// it holds something else, which decoding will reject later.
fn object_entry<'m>(
    map: &'m mut Map<String, Value>,
    key: &str,
) -> Option<&'m mut Map<String, Value>> {
    if is_unset(map, key) {
        map.insert(key.to_owned(), Value::Object(Map::new()));
    }
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// Fills in what kube-apiserver defaults on a Service before validation, on
/// the raw JSON so that defaulted fields are stored and returned like
/// upstream's. The IP family fields depend on the cluster's service ranges
/// and the stored Service: `ip_families` completes them.
pub fn default_service(service: &mut Value) {
    let Some(spec) = service
        .as_object_mut()
        .and_then(|o| object_entry(o, "spec"))
    else {
        return;
    };
    set_default(spec, "type", "ClusterIP");
    set_default(spec, "sessionAffinity", "None");
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();

    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
        && let Some(config) = object_entry(spec, "sessionAffinityConfig")
        && let Some(client_ip) = object_entry(config, "clientIP")
    {
        set_default(
            client_ip,
            "timeoutSeconds",
            DEFAULT_CLIENT_IP_AFFINITY_SECONDS,
        );
    }

    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(port, "protocol", "TCP");
            let target_unset = match port.get("targetPort") {
                None | Some(Value::Null) => true,
                Some(Value::Number(n)) => n.as_i64() == Some(0),
                Some(Value::String(s)) => s.is_empty(),
                Some(_) => false,
            };
            if target_unset && let Some(p) = port.get("port").cloned() {
                port.insert("targetPort".to_owned(), p);
            }
        }
    }

    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        set_default(spec, "externalTrafficPolicy", "Cluster");
    }
    if ty == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", true);
    }
    if ty != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", "Cluster");
    }
}

/// Keeps `clusterIP` and `clusterIPs` in sync on create, as the registry
/// does: an older client sets only the first.
pub fn sync_cluster_ips(service: &mut Value) {
    let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let cluster_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned);
    let first_cluster_ip = spec
        .get("clusterIPs")
        .and_then(Value::as_array)
        .and_then(|ips| ips.first())
        .cloned();
    match (cluster_ip, first_cluster_ip) {
        (Some(ip), None) => {
            spec.insert("clusterIPs".to_owned(), Value::from(vec![ip]));
        }
        (None, Some(first)) => {
            spec.insert("clusterIP".to_owned(), first);
        }
        _ => {}
    }
}
