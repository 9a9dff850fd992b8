//! What one object charges to its namespace's ResourceQuotas, by quota
//! resource name, as kube's quota evaluators: every object counts as
//! `count/<resource>.<group>`; pods, services and claims also as their
//! standard names and their compute or storage requests. The admission
//! plugin charges it; the quota controller sums it over a namespace.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::clock;
use crate::controllers::meta;
use crate::quantity::Quantity;

/// Quota resource name → amount.
pub type Usage = BTreeMap<String, Quantity>;

/// The compute resources a quota on pods can cover; each needs every
/// container to set it ("must specify").
pub const COMPUTE: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

/// The standard quota resource names and the resource (group, plural)
/// whose objects charge them.
pub const STANDARD: &[(&str, &str, &str)] = &[
    ("pods", "", "pods"),
    ("cpu", "", "pods"),
    ("memory", "", "pods"),
    ("requests.cpu", "", "pods"),
    ("requests.memory", "", "pods"),
    ("limits.cpu", "", "pods"),
    ("limits.memory", "", "pods"),
    ("services", "", "services"),
    ("services.nodeports", "", "services"),
    ("services.loadbalancers", "", "services"),
    ("configmaps", "", "configmaps"),
    ("secrets", "", "secrets"),
    ("persistentvolumeclaims", "", "persistentvolumeclaims"),
    ("requests.storage", "", "persistentvolumeclaims"),
    ("replicationcontrollers", "", "replicationcontrollers"),
    ("resourcequotas", "", "resourcequotas"),
];

/// The quota resource name that counts objects of `plural` in `group`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The (group, plural) whose objects charge the quota resource `name`;
/// `None` for a name quota does not know.
pub fn charged_by(name: &str) -> Option<(String, String)> {
    if let Some(&(_, group, plural)) = STANDARD.iter().find(|(known, ..)| *known == name) {
        return Some((group.to_owned(), plural.to_owned()));
    }
    let counted = name.strip_prefix("count/")?;
    let (plural, group) = counted.split_once('.').unwrap_or((counted, ""));
    (!plural.is_empty()).then(|| (group.to_owned(), plural.to_owned()))
}

/// What `object`, of `plural` in `group`, charges.
pub fn usage(group: &str, plural: &str, object: &Value) -> Usage {
    if group.is_empty() && plural == "pods" && !counts_against_quota(object) {
        return Usage::new();
    }
    let mut usage = Usage::from([(count_name(group, plural), Quantity::units(1))]);
    if !group.is_empty() {
        return usage;
    }
    match plural {
        "pods" => usage.extend(pod_usage(object)),
        "services" => usage.extend(service_usage(object)),
        "persistentvolumeclaims" => {
            usage.insert("persistentvolumeclaims".into(), Quantity::units(1));
            if let Some(storage) = Quantity::of(&object["spec"]["resources"]["requests"]["storage"])
            {
                usage.insert("requests.storage".into(), storage);
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            usage.insert(plural.into(), Quantity::units(1));
        }
        _ => {}
    }
    usage
}

/// Whether replacing `old` by `new` charges more of anything.
pub fn grows(group: &str, plural: &str, old: &Value, new: &Value) -> bool {
    let before = usage(group, plural, old);
    usage(group, plural, new)
        .iter()
        .any(|(name, amount)| before.get(name).is_none_or(|was| amount > was))
}

/// Finished pods, and those whose grace period after deletion has run
/// out, hold no quota.
fn counts_against_quota(pod: &Value) -> bool {
    if matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    let metadata = &pod["metadata"];
    match meta::parse_time(&metadata["deletionTimestamp"]) {
        Some(deleted) => {
            let grace = metadata["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
            deleted.as_second().saturating_add(grace) > clock::unix_now()
        }
        None => true,
    }
}

/// The quota names one container's requests and limits set.
pub fn container_usage(container: &Value) -> Usage {
    let mut usage = Usage::new();
    let resources = &container["resources"];
    for resource in ["cpu", "memory"] {
        if let Some(request) = Quantity::of(&resources["requests"][resource]) {
            usage.insert(resource.into(), request);
            usage.insert(format!("requests.{resource}"), request);
        }
        if let Some(limit) = Quantity::of(&resources["limits"][resource]) {
            usage.insert(format!("limits.{resource}"), limit);
        }
    }
    usage
}

/// The pod's effective requests and limits: the containers' sum, or the
/// largest init container's when that is more (init containers run one
/// at a time, before the others).
fn pod_usage(pod: &Value) -> Usage {
    let containers = |field: &str| -> Vec<Usage> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .map(container_usage)
            .collect()
    };
    let mut usage = Usage::new();
    for container in containers("containers") {
        for (name, amount) in container {
            let total = usage.entry(name).or_insert(Quantity::ZERO);
            *total = *total + amount;
        }
    }
    for init in containers("initContainers") {
        for (name, amount) in init {
            let total = usage.entry(name).or_insert(Quantity::ZERO);
            *total = (*total).max(amount);
        }
    }
    usage.insert("pods".into(), Quantity::units(1));
    usage
}

fn service_usage(service: &Value) -> Usage {
    let mut usage = Usage::from([("services".into(), Quantity::units(1))]);
    let kind = service["spec"]["type"].as_str().unwrap_or("ClusterIP");
    if kind == "LoadBalancer" {
        usage.insert("services.loadbalancers".into(), Quantity::units(1));
    }
    if matches!(kind, "NodePort" | "LoadBalancer") {
        let ports = service["spec"]["ports"].as_array().map_or(0, Vec::len);
        usage.insert(
            "services.nodeports".into(),
            Quantity::units(i64::try_from(ports).unwrap_or(i64::MAX)),
        );
    }
    usage
}

/// `(name, amount)` pairs as kube-apiserver prints them in its messages:
/// `pods=1,requests.cpu=500m`.
pub fn pretty(usage: &Usage) -> String {
    usage
        .iter()
        .map(|(name, amount)| format!("{name}={amount}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pods_charge_their_effective_requests() {
        let pod = json!({
            "spec": {
                "containers": [
                    { "name": "a", "resources": { "requests": { "cpu": "100m", "memory": "64Mi" }, "limits": { "cpu": "200m" } } },
                    { "name": "b", "resources": { "requests": { "cpu": "150m", "memory": "64Mi" } } },
                ],
                "initContainers": [
                    { "name": "i", "resources": { "requests": { "cpu": "1" } } },
                ],
            },
            "status": { "phase": "Running" },
        });
        let usage = usage("", "pods", &pod);
        assert_eq!(
            pretty(&usage),
            "count/pods=1,cpu=1,limits.cpu=200m,memory=128Mi,pods=1,requests.cpu=1,requests.memory=128Mi"
        );
        let done = json!({ "spec": {}, "status": { "phase": "Succeeded" } });
        assert!(super::usage("", "pods", &done).is_empty());
    }

    #[test]
    fn services_and_other_kinds() {
        let service =
            json!({ "spec": { "type": "NodePort", "ports": [{ "port": 80 }, { "port": 443 }] } });
        assert_eq!(
            pretty(&usage("", "services", &service)),
            "count/services=1,services=1,services.nodeports=2"
        );
        assert_eq!(
            pretty(&usage("apps", "deployments", &json!({}))),
            "count/deployments.apps=1"
        );
        assert_eq!(
            charged_by("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            charged_by("limits.cpu"),
            Some((String::new(), "pods".into()))
        );
        assert_eq!(charged_by("gpus"), None);
    }
}
