//! A StatefulSet pod's stable identity: its name `<set>-<ordinal>`, its
//! labels, its hostname and subdomain, and its claims
//! `<template>-<set>-<ordinal>`, which outlive the pod and are found again
//! by name when it returns.

use serde_json::{Map, Value, json};

use super::super::meta;
use super::revision::HASH_LABEL;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

pub fn pod_name(set: &Value, ordinal: i64) -> String {
    format!("{}-{ordinal}", meta::name(set))
}

/// The ordinal in a pod's name, if it is one of `set`'s names.
pub fn ordinal_of(set: &Value, pod_name: &str) -> Option<i64> {
    let digits = pod_name.strip_prefix(meta::name(set))?.strip_prefix('-')?;
    let canonical = !digits.is_empty() && (digits == "0" || !digits.starts_with('0'));
    let all_digits = digits.bytes().all(|byte| byte.is_ascii_digit());
    (canonical && all_digits)
        .then(|| digits.parse().ok())
        .flatten()
}

pub fn claim_name(claim_template: &Value, set: &Value, ordinal: i64) -> String {
    format!("{}-{}", meta::name(claim_template), pod_name(set, ordinal))
}

pub fn claim_templates(set: &Value) -> &[Value] {
    set["spec"]["volumeClaimTemplates"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

/// The pod of `ordinal` from `template` (of the revision `revision`).
pub fn pod(set: &Value, template: &Value, revision: &str, ordinal: i64) -> Value {
    let name = pod_name(set, ordinal);
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    let labels = &mut metadata["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[POD_NAME_LABEL] = json!(name);
    labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
    labels[HASH_LABEL] = json!(revision);
    metadata["name"] = json!(name);
    metadata["namespace"] = json!(meta::namespace(set));
    metadata["ownerReferences"] = json!([meta::controller_reference(set)]);
    let mut spec = template["spec"].clone();
    spec["hostname"] = json!(name);
    if let Some(service) = set["spec"]["serviceName"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        spec["subdomain"] = json!(service);
    }
    let templates = claim_templates(set);
    // A claim template replaces a template volume of the same name.
    let mut volumes: Vec<Value> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|volume| {
            !templates
                .iter()
                .any(|claim| meta::name(claim) == volume["name"].as_str().unwrap_or_default())
        })
        .cloned()
        .collect();
    volumes.extend(templates.iter().map(|claim| {
        json!({
            "name": meta::name(claim),
            "persistentVolumeClaim": { "claimName": claim_name(claim, set, ordinal) },
        })
    }));
    if !volumes.is_empty() {
        spec["volumes"] = json!(volumes);
    }
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec })
}

/// The claim of `ordinal` from `claim_template`: its labels and the set's
/// selector labels, and the owners the retention policy asks for.
pub fn claim(set: &Value, claim_template: &Value, ordinal: i64) -> Value {
    let mut metadata = claim_template["metadata"].clone();
    let mut labels = metadata["labels"].as_object().cloned().unwrap_or_default();
    if let Some(selected) = set["spec"]["selector"]["matchLabels"].as_object() {
        labels.extend(selected.clone());
    }
    metadata["labels"] = Value::Object(labels);
    metadata["name"] = json!(claim_name(claim_template, set, ordinal));
    metadata["namespace"] = json!(meta::namespace(set));
    let owners = claim_owners(set, None, &[]);
    if !owners.is_empty() {
        metadata["ownerReferences"] = json!(owners);
    }
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata,
        "spec": claim_template["spec"],
    })
}

/// A plain (not controlling) reference to `owner`, so the garbage
/// collector deletes the claim after it.
fn owner_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    })
}

/// A claim's ownerReferences under `persistentVolumeClaimRetentionPolicy`:
/// `whenDeleted: Delete` makes the set an owner; `whenScaled: Delete`
/// makes the pod an owner while it is condemned (`condemned_pod`). Other
/// owners in `current` stay.
pub fn claim_owners(set: &Value, condemned_pod: Option<&Value>, current: &[Value]) -> Vec<Value> {
    let policy = &set["spec"]["persistentVolumeClaimRetentionPolicy"];
    let set_uid = meta::uid(set);
    let mut owners: Vec<Value> = current
        .iter()
        .filter(|owner| {
            let uid = owner["uid"].as_str().unwrap_or_default();
            let ours = uid == set_uid || (owner["kind"] == "Pod" && owner["apiVersion"] == "v1");
            !ours
        })
        .cloned()
        .collect();
    if policy["whenDeleted"] == "Delete" {
        owners.push(owner_reference(set));
    }
    if let (Some(pod), "Delete") = (condemned_pod, policy["whenScaled"].as_str().unwrap_or("")) {
        owners.push(owner_reference(pod));
    }
    owners
}

/// The ownerReferences of an object, as a slice.
pub fn owners(object: &Value) -> &[Value] {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

/// The revision a pod was made from (its `controller-revision-hash` label).
pub fn pod_revision(pod: &Value) -> &str {
    pod["metadata"]["labels"][HASH_LABEL]
        .as_str()
        .unwrap_or_default()
}

/// The labels of a revision: the template's and its hash.
pub fn revision_labels(template: &Value, hash: &str) -> Value {
    let mut labels: Map<String, Value> = template["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert(HASH_LABEL.to_owned(), json!(hash));
    Value::Object(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(policy: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": { "name": "web", "namespace": "default", "uid": "s1" },
            "spec": {
                "serviceName": "nginx",
                "selector": { "matchLabels": { "app": "web" } },
                "persistentVolumeClaimRetentionPolicy": policy,
                "volumeClaimTemplates": [{
                    "metadata": { "name": "www" },
                    "spec": { "accessModes": ["ReadWriteOnce"] },
                }],
            },
        })
    }

    fn retain() -> Value {
        json!({ "whenDeleted": "Retain", "whenScaled": "Retain" })
    }

    #[test]
    fn names_and_ordinals() {
        let set = set(retain());
        assert_eq!(pod_name(&set, 3), "web-3");
        assert_eq!(ordinal_of(&set, "web-3"), Some(3));
        assert_eq!(ordinal_of(&set, "web-0"), Some(0));
        for other in ["web-03", "web-", "web-x", "webby-1", "web-1-2"] {
            assert_eq!(ordinal_of(&set, other), None, "{other}");
        }
        let template = &claim_templates(&set)[0];
        assert_eq!(claim_name(template, &set, 2), "www-web-2");
    }

    #[test]
    fn pods_carry_their_identity_and_claims() {
        let set = set(retain());
        let template = json!({
            "metadata": { "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "c" }], "volumes": [{ "name": "www", "emptyDir": {} }] },
        });
        let pod = pod(&set, &template, "web-abc", 1);
        let labels = &pod["metadata"]["labels"];
        assert_eq!(pod["metadata"]["name"], "web-1");
        assert_eq!(labels["app"], "web");
        assert_eq!(labels[POD_NAME_LABEL], "web-1");
        assert_eq!(labels[POD_INDEX_LABEL], "1");
        assert_eq!(labels[HASH_LABEL], "web-abc");
        assert_eq!(pod["spec"]["hostname"], "web-1");
        assert_eq!(pod["spec"]["subdomain"], "nginx");
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{ "name": "www", "persistentVolumeClaim": { "claimName": "www-web-1" } }])
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "s1");
    }

    #[test]
    fn claims_are_owned_as_the_retention_policy_says() {
        let retained = set(retain());
        let claim = claim(&retained, &claim_templates(&retained)[0], 0);
        assert_eq!(claim["metadata"]["name"], "www-web-0");
        assert_eq!(claim["metadata"]["labels"]["app"], "web");
        assert!(claim["metadata"]["ownerReferences"].is_null());
        let deleting = set(json!({ "whenDeleted": "Delete", "whenScaled": "Delete" }));
        let pod = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "web-2", "uid": "p2" } });
        let owners = claim_owners(&deleting, Some(&pod), &[]);
        let uids: Vec<&Value> = owners.iter().map(|owner| &owner["uid"]).collect();
        assert_eq!(uids, ["s1", "p2"]);
        // Back in range: the pod no longer owns it.
        assert_eq!(claim_owners(&deleting, None, &owners).len(), 1);
        assert!(claim_owners(&retained, None, &owners).is_empty());
    }
}
