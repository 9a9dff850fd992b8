//! What the volume binder, the local-path provisioner and the scheduler
//! read off claims, volumes and classes alike: which class a claim asks
//! for and how it binds, which volumes fit a claim, and which nodes a
//! volume's node affinity admits.

use serde_json::Value;

use super::meta;
use crate::kinds::SELECTED_NODE_ANNOTATION;
use crate::scheduler::quantity;

/// The claim's class; "" for none.
pub fn class_name(object: &Value) -> &str {
    object["spec"]["storageClassName"]
        .as_str()
        .unwrap_or_default()
}

/// Whether the class (looked up among `classes`) binds a claim only once a
/// pod using it is scheduled.
pub fn waits_for_consumer(claim: &Value, classes: &[Value]) -> bool {
    class_of(claim, classes)
        .is_some_and(|class| class["volumeBindingMode"] == "WaitForFirstConsumer")
}

/// The StorageClass the claim names, if it exists.
pub fn class_of<'a>(claim: &Value, classes: &'a [Value]) -> Option<&'a Value> {
    let name = class_name(claim);
    classes
        .iter()
        .find(|class| !name.is_empty() && meta::name(class) == name)
}

/// The node the scheduler picked for the claim, if any.
pub fn selected_node(claim: &Value) -> Option<&str> {
    claim["metadata"]["annotations"][SELECTED_NODE_ANNOTATION]
        .as_str()
        .filter(|node| !node.is_empty())
}

/// The volume the claim is bound to, if any.
pub fn volume_name(claim: &Value) -> Option<&str> {
    claim["spec"]["volumeName"]
        .as_str()
        .filter(|name| !name.is_empty())
}

/// Whether the volume's `claimRef` names `claim` (its uid too, when it has one).
pub fn claimed_by(volume: &Value, claim: &Value) -> bool {
    let reference = &volume["spec"]["claimRef"];
    reference["namespace"].as_str() == Some(meta::namespace(claim))
        && reference["name"].as_str() == Some(meta::name(claim))
        && reference["uid"]
            .as_str()
            .is_none_or(|uid| uid.is_empty() || uid == meta::uid(claim))
}

/// Whether the volume can serve the claim: same class, every access mode
/// the claim asks for, at least the storage it requests, same volume mode.
pub fn fits(volume: &Value, claim: &Value) -> bool {
    let (spec, wanted) = (&volume["spec"], &claim["spec"]);
    let modes = |spec: &Value| -> Vec<String> {
        spec["accessModes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|mode| mode.as_str().map(str::to_owned))
            .collect()
    };
    let has = modes(spec);
    let capacity = quantity::of(&spec["capacity"]["storage"]).unwrap_or(0.0);
    let request = quantity::of(&wanted["resources"]["requests"]["storage"]).unwrap_or(0.0);
    let volume_mode = |spec: &Value| {
        spec["volumeMode"]
            .as_str()
            .unwrap_or("Filesystem")
            .to_owned()
    };
    class_name(volume) == class_name(claim)
        && modes(wanted).iter().all(|mode| has.contains(mode))
        && capacity >= request
        && volume_mode(spec) == volume_mode(wanted)
}

/// The volume to bind the claim to: one already reserved for it, else the
/// smallest free one that fits and whose node affinity admits `node` (when
/// the claim waits for a node).
pub fn pick_volume<'a>(
    claim: &Value,
    volumes: &'a [Value],
    node: Option<&Value>,
) -> Option<&'a Value> {
    let usable = |volume: &&Value| {
        !meta::is_terminating(volume)
            && fits(volume, claim)
            && node.is_none_or(|node| admits(volume, node))
    };
    if let Some(reserved) = volumes
        .iter()
        .filter(usable)
        .find(|volume| claimed_by(volume, claim))
    {
        return Some(reserved);
    }
    volumes
        .iter()
        .filter(usable)
        .filter(|volume| volume["spec"]["claimRef"].is_null())
        .min_by(|a, b| {
            let size = |volume: &Value| quantity::of(&volume["spec"]["capacity"]["storage"]);
            size(a)
                .partial_cmp(&size(b))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| meta::name(a).cmp(meta::name(b)))
        })
}

/// Whether the volume's node affinity admits `node` (a volume without one
/// is reachable from every node).
pub fn admits(volume: &Value, node: &Value) -> bool {
    let required = &volume["spec"]["nodeAffinity"]["required"];
    required["nodeSelectorTerms"].is_null() || meta::node_selector_matches(required, node)
}

/// The node a volume's affinity pins it to by hostname, as the local-path
/// provisioner writes it.
pub fn pinned_node(volume: &Value) -> Option<&str> {
    volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
        .as_array()?
        .iter()
        .flat_map(|term| term["matchExpressions"].as_array().into_iter().flatten())
        .find(|expression| {
            expression["key"] == HOSTNAME_LABEL && expression["operator"] == "In"
        })?["values"][0]
        .as_str()
}

/// The label every node carries with its own name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claim(class: &str, size: &str) -> Value {
        json!({
            "metadata": { "name": "data", "namespace": "default", "uid": "u1" },
            "spec": { "storageClassName": class, "accessModes": ["ReadWriteOnce"],
                "resources": { "requests": { "storage": size } } },
        })
    }

    fn volume(name: &str, size: &str, node: Option<&str>) -> Value {
        let mut volume = json!({
            "metadata": { "name": name },
            "spec": { "storageClassName": "manual", "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                "capacity": { "storage": size }, "hostPath": { "path": "/x" } },
        });
        if let Some(node) = node {
            volume["spec"]["nodeAffinity"] = json!({ "required": { "nodeSelectorTerms": [
                { "matchExpressions": [{ "key": HOSTNAME_LABEL, "operator": "In", "values": [node] }] }
            ] } });
        }
        volume
    }

    fn node(name: &str) -> Value {
        json!({ "metadata": { "name": name, "labels": { HOSTNAME_LABEL: name } } })
    }

    #[test]
    fn the_smallest_fitting_volume_is_picked() {
        let volumes = [
            volume("big", "10Gi", None),
            volume("small", "1Gi", None),
            volume("tiny", "100Mi", None),
        ];
        let wanted = claim("manual", "500Mi");
        assert_eq!(
            meta::name(pick_volume(&wanted, &volumes, None).unwrap()),
            "small"
        );
        assert!(pick_volume(&claim("other", "1Mi"), &volumes, None).is_none());
        let mut reserved = volumes.clone();
        reserved[0]["spec"]["claimRef"] = json!({ "namespace": "default", "name": "data" });
        assert_eq!(
            meta::name(pick_volume(&wanted, &reserved, None).unwrap()),
            "big"
        );
    }

    #[test]
    fn node_affinity_restricts_volumes() {
        let pinned = volume("pv", "1Gi", Some("node1"));
        assert!(admits(&pinned, &node("node1")));
        assert!(!admits(&pinned, &node("node2")));
        assert!(admits(&volume("free", "1Gi", None), &node("node2")));
        assert_eq!(pinned_node(&pinned), Some("node1"));
        let volumes = [pinned];
        assert!(pick_volume(&claim("manual", "1Gi"), &volumes, Some(&node("node2"))).is_none());
        let by_field = json!({ "matchFields": [{ "key": "metadata.name", "operator": "NotIn", "values": ["node1"] }] });
        assert!(meta::node_selector_term_matches(&by_field, &node("node2")));
        assert!(!meta::node_selector_term_matches(&by_field, &node("node1")));
    }
}
