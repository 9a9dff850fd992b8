//! Which nodes a pod may go to: Ready, schedulable (or the pod tolerates
//! its unschedulable taint), its nodeSelector and required node affinity
//! (on labels and on `metadata.name`), its tolerations of the node's taints,
//! and its requests within what the node has left.

use serde_json::{Value, json};

use super::quantity;
use crate::controllers::meta;

/// What pods ask for (requests) or a node has (allocatable): cores, bytes,
/// pods.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    pub cpu: f64,
    pub memory: f64,
    pub pods: f64,
}

impl Resources {
    pub fn add(&mut self, other: Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.pods += other.pods;
    }
}

/// What kubelet defaults `maxPods` to, for a node that does not say.
const DEFAULT_MAX_PODS: f64 = 110.0;

/// The sum of the pod's containers' requests, and the one pod itself.
pub fn requests(pod: &Value) -> Resources {
    let mut total = Resources {
        pods: 1.0,
        ..Resources::default()
    };
    for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let requests = &container["resources"]["requests"];
        total.cpu += quantity::of(&requests["cpu"]).unwrap_or(0.0);
        total.memory += quantity::of(&requests["memory"]).unwrap_or(0.0);
    }
    total
}

/// The node's allocatable resources (capacity where it reports no
/// allocatable).
pub fn allocatable(node: &Value) -> Resources {
    let status = &node["status"];
    let field = |name: &str| {
        quantity::of(&status["allocatable"][name])
            .or_else(|| quantity::of(&status["capacity"][name]))
    };
    Resources {
        cpu: field("cpu").unwrap_or(0.0),
        memory: field("memory").unwrap_or(0.0),
        pods: field("pods").unwrap_or(DEFAULT_MAX_PODS),
    }
}

/// Why a node was not chosen, worded like kube-scheduler's reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Misfit {
    NotReady,
    Unschedulable,
    Selector,
    Taint,
    Cpu,
    Memory,
    Pods,
    VolumeNodeAffinity,
    NoVolume,
}

impl Misfit {
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotReady => "node(s) were not ready",
            Self::Unschedulable => "node(s) were unschedulable",
            Self::Selector => "node(s) didn't match Pod's node affinity/selector",
            Self::Taint => "node(s) had untolerated taint",
            Self::Cpu => "Insufficient cpu",
            Self::Memory => "Insufficient memory",
            Self::Pods => "Too many pods",
            Self::VolumeNodeAffinity => "node(s) had volume node affinity conflict",
            Self::NoVolume => "node(s) didn't find available persistent volumes to bind",
        }
    }
}

/// The first reason `pod` cannot go to `node`, already holding `used`.
pub fn check(pod: &Value, node: &Value, used: Resources) -> Result<(), Misfit> {
    if meta::condition(node, "Ready") != Some("True") {
        return Err(Misfit::NotReady);
    }
    let tolerations = pod["spec"]["tolerations"].as_array();
    // kube-scheduler's NodeUnschedulable plugin: the taint the node would
    // carry for it may be tolerated (DaemonSet pods do).
    let unschedulable_taint = json!({ "key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule" });
    if node["spec"]["unschedulable"].as_bool() == Some(true)
        && !tolerations
            .into_iter()
            .flatten()
            .any(|toleration| tolerates(toleration, &unschedulable_taint))
    {
        return Err(Misfit::Unschedulable);
    }
    if !node_affinity_admits(pod, node) {
        return Err(Misfit::Selector);
    }
    let untolerated = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|taint| matches!(taint["effect"].as_str(), Some("NoSchedule" | "NoExecute")))
        .any(|taint| {
            !tolerations
                .into_iter()
                .flatten()
                .any(|toleration| tolerates(toleration, taint))
        });
    if untolerated {
        return Err(Misfit::Taint);
    }
    let wanted = requests(pod);
    let room = allocatable(node);
    if wanted.cpu > 0.0 && used.cpu + wanted.cpu > room.cpu {
        return Err(Misfit::Cpu);
    }
    if wanted.memory > 0.0 && used.memory + wanted.memory > room.memory {
        return Err(Misfit::Memory);
    }
    if used.pods + wanted.pods > room.pods {
        return Err(Misfit::Pods);
    }
    Ok(())
}

/// The taint of a node marked unschedulable.
pub const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// The pod's nodeSelector and required node affinity both admit `node`.
pub fn node_affinity_admits(pod: &Value, node: &Value) -> bool {
    let required =
        &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    meta::map_matches(&pod["spec"]["nodeSelector"], &node["metadata"]["labels"])
        && (required.is_null() || meta::node_selector_matches(required, node))
}

/// Kubernetes' `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = toleration["effect"].as_str().unwrap_or_default();
    if !effect.is_empty() && Some(effect) != taint["effect"].as_str() {
        return false;
    }
    let key = toleration["key"].as_str().unwrap_or_default();
    if !key.is_empty() && Some(key) != taint["key"].as_str() {
        return false;
    }
    match toleration["operator"].as_str().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            toleration["value"].as_str().unwrap_or_default()
                == taint["value"].as_str().unwrap_or_default()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(extra: Value) -> Value {
        let mut node = json!({
            "metadata": { "name": "n1", "labels": { "disk": "ssd" } },
            "spec": {},
            "status": {
                "allocatable": { "cpu": "2", "memory": "1Gi", "pods": "3" },
                "conditions": [{ "type": "Ready", "status": "True" }],
            },
        });
        json_patch::merge(&mut node, &extra);
        node
    }

    fn pod(spec: Value) -> Value {
        json!({ "spec": spec })
    }

    #[test]
    fn filters_like_kube_scheduler() {
        let small =
            pod(json!({ "containers": [{ "resources": { "requests": { "cpu": "500m" } } }] }));
        assert_eq!(
            check(&small, &node(json!({})), Resources::default()),
            Ok(())
        );
        let full = Resources {
            cpu: 1.8,
            ..Resources::default()
        };
        assert_eq!(check(&small, &node(json!({})), full), Err(Misfit::Cpu));
        let crowded = Resources {
            pods: 3.0,
            ..Resources::default()
        };
        assert_eq!(check(&small, &node(json!({})), crowded), Err(Misfit::Pods));
        let not_ready =
            node(json!({ "status": { "conditions": [{ "type": "Ready", "status": "Unknown" }] } }));
        assert_eq!(
            check(&small, &not_ready, Resources::default()),
            Err(Misfit::NotReady)
        );
        let hdd = pod(json!({ "nodeSelector": { "disk": "hdd" } }));
        assert_eq!(
            check(&hdd, &node(json!({})), Resources::default()),
            Err(Misfit::Selector)
        );

        let tainted = node(
            json!({ "spec": { "taints": [{ "key": "dedicated", "value": "db", "effect": "NoSchedule" }] } }),
        );
        assert_eq!(
            check(&small, &tainted, Resources::default()),
            Err(Misfit::Taint)
        );
        let tolerant = pod(
            json!({ "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule" }] }),
        );
        assert_eq!(check(&tolerant, &tainted, Resources::default()), Ok(()));
        let everything = pod(json!({ "tolerations": [{ "operator": "Exists" }] }));
        assert_eq!(check(&everything, &tainted, Resources::default()), Ok(()));
        let cordoned = node(json!({ "spec": { "unschedulable": true } }));
        assert_eq!(
            check(&small, &cordoned, Resources::default()),
            Err(Misfit::Unschedulable)
        );
        let daemon = pod(
            json!({ "tolerations": [{ "key": UNSCHEDULABLE_TAINT, "operator": "Exists", "effect": "NoSchedule" }] }),
        );
        assert_eq!(check(&daemon, &cordoned, Resources::default()), Ok(()));
    }

    #[test]
    fn required_node_affinity_on_labels_and_names() {
        let affinity = |term: Value| {
            pod(json!({ "affinity": { "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [term] },
            } } }))
        };
        let on_n1 = affinity(
            json!({ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["n1"] }] }),
        );
        assert_eq!(
            check(&on_n1, &node(json!({})), Resources::default()),
            Ok(())
        );
        let on_n2 = affinity(
            json!({ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["n2"] }] }),
        );
        assert_eq!(
            check(&on_n2, &node(json!({})), Resources::default()),
            Err(Misfit::Selector)
        );
        let no_hdd = affinity(
            json!({ "matchExpressions": [{ "key": "disk", "operator": "NotIn", "values": ["ssd"] }] }),
        );
        assert_eq!(
            check(&no_hdd, &node(json!({})), Resources::default()),
            Err(Misfit::Selector)
        );
    }
}
