//! What the controllers read off objects: identity, owners, pod state,
//! label selectors, times.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

pub fn namespace(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

pub fn uid(object: &Value) -> &str {
    object["metadata"]["uid"].as_str().unwrap_or_default()
}

/// Marked for deletion (a pod its node has not yet stopped).
pub fn is_terminating(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

/// The ownerReference with `controller: true`, if any.
pub fn controller_of(object: &Value) -> Option<&Value> {
    object["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|owner| owner["controller"].as_bool() == Some(true))
}

/// Whether `owner_uid` is the object's controller.
pub fn controlled_by(object: &Value, owner_uid: &str) -> bool {
    controller_of(object).is_some_and(|owner| owner["uid"].as_str() == Some(owner_uid))
}

/// An ownerReference naming `owner` as the controller.
pub fn controller_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A pod that still runs or will: not finished and not being deleted.
pub fn pod_active(pod: &Value) -> bool {
    !is_terminating(pod) && !pod_finished(pod)
}

pub fn pod_finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// The status of the condition `type` (`True`, `False`, `Unknown`).
pub fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"].as_str() == Some(kind))?["status"]
        .as_str()
}

/// Pod condition Ready=True: what counts as available.
pub fn pod_ready(pod: &Value) -> bool {
    condition(pod, "Ready") == Some("True")
}

pub fn node_name(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

/// Whether `labels` satisfy a `metav1.LabelSelector` (`matchLabels` and
/// `matchExpressions`); an empty selector matches everything.
pub fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let label = |key: &str| labels[key].as_str();
    let match_labels = selector["matchLabels"].as_object();
    let labels_ok = match_labels.is_none_or(|wanted| {
        wanted
            .iter()
            .all(|(key, value)| label(key) == value.as_str())
    });
    let expressions = selector["matchExpressions"].as_array();
    labels_ok
        && expressions.is_none_or(|expressions| {
            expressions.iter().all(|expression| {
                let key = expression["key"].as_str().unwrap_or_default();
                let values: Vec<&str> = expression["values"]
                    .as_array()
                    .map(|values| values.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match expression["operator"].as_str() {
                    Some("In") => label(key).is_some_and(|value| values.contains(&value)),
                    Some("NotIn") => label(key).is_none_or(|value| !values.contains(&value)),
                    Some("Exists") => label(key).is_some(),
                    Some("DoesNotExist") => label(key).is_none(),
                    _ => false,
                }
            })
        })
}

/// Whether `labels` carry every pair of a plain selector map (a Service's
/// or a nodeSelector).
pub fn map_matches(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_none_or(|wanted| {
        wanted
            .iter()
            .all(|(key, value)| labels[key].as_str() == value.as_str())
    })
}

/// A `NodeSelector` (required node affinity): one of its terms holds.
pub fn node_selector_matches(selector: &Value, node: &Value) -> bool {
    selector["nodeSelectorTerms"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|term| node_selector_term_matches(term, node))
}

/// A `NodeSelectorTerm`: every expression on labels and fields holds.
pub fn node_selector_term_matches(term: &Value, node: &Value) -> bool {
    let labels = &node["metadata"]["labels"];
    let expressions = term["matchExpressions"].as_array().into_iter().flatten();
    let fields = term["matchFields"].as_array().into_iter().flatten();
    let has_any = term["matchExpressions"]
        .as_array()
        .is_some_and(|e| !e.is_empty())
        || term["matchFields"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
    has_any
        && expressions.into_iter().all(|expression| {
            requirement_holds(
                expression,
                labels[expression["key"].as_str().unwrap_or_default()].as_str(),
            )
        })
        && fields.into_iter().all(|expression| {
            let value = (expression["key"] == "metadata.name").then(|| name(node));
            requirement_holds(expression, value)
        })
}

/// A `NodeSelectorRequirement` on a label (or field) whose value is `value`.
fn requirement_holds(requirement: &Value, value: Option<&str>) -> bool {
    let values: Vec<&str> = requirement["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let number = |text: &str| text.parse::<i64>().ok();
    match requirement["operator"].as_str() {
        Some("In") => value.is_some_and(|value| values.contains(&value)),
        Some("NotIn") => value.is_none_or(|value| !values.contains(&value)),
        Some("Exists") => value.is_some(),
        Some("DoesNotExist") => value.is_none(),
        Some("Gt") => {
            matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(have), Some(limit)) if have > limit)
        }
        Some("Lt") => {
            matches!((value.and_then(number), values.first().and_then(|v| number(v))), (Some(have), Some(limit)) if have < limit)
        }
        _ => false,
    }
}

/// Kubernetes' `ComputeHash`: FNV-1a (32 bit) of the template, written as
/// `SafeEncodeString` of its decimal form.
pub fn template_hash(template: &Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // serde_json's maps are sorted, so equal templates give equal text.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in template.to_string().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|digit| ALPHABET[usize::from(digit) % ALPHABET.len()] as char)
        .collect()
}

/// The current time (jiff here is built without its clock).
pub fn timestamp_now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_microsecond(since.as_micros() as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Now as `metav1.Time` (seconds).
pub fn now() -> Value {
    serde_json::to_value(Time(timestamp_now())).expect("a time serializes")
}

/// Now as `metav1.MicroTime`.
pub fn now_micro() -> Value {
    serde_json::to_value(MicroTime(timestamp_now())).expect("a time serializes")
}

/// A `Time` or `MicroTime` field.
pub fn parse_time(value: &Value) -> Option<Timestamp> {
    value.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_match_like_kubernetes() {
        let labels = json!({ "app": "web", "tier": "front" });
        assert!(selector_matches(&json!({}), &labels));
        assert!(selector_matches(
            &json!({ "matchLabels": { "app": "web" } }),
            &labels
        ));
        assert!(!selector_matches(
            &json!({ "matchLabels": { "app": "db" } }),
            &labels
        ));
        let expressions = json!({ "matchExpressions": [
            { "key": "tier", "operator": "In", "values": ["front", "back"] },
            { "key": "canary", "operator": "DoesNotExist" },
        ] });
        assert!(selector_matches(&expressions, &labels));
        assert!(map_matches(&json!({ "app": "web" }), &labels));
        assert!(!map_matches(&json!({ "app": "web", "x": "y" }), &labels));
    }

    #[test]
    fn times_round_trip() {
        assert!(parse_time(&now()).is_some());
        assert!(parse_time(&now_micro()).is_some());
        assert!(parse_time(&json!("2024-01-02T03:04:05.123456Z")).is_some());
    }

    #[test]
    fn template_hashes_are_stable_and_safe() {
        let a = template_hash(&json!({ "spec": { "containers": [{ "image": "a" }] } }));
        let b = template_hash(&json!({ "spec": { "containers": [{ "image": "b" }] } }));
        assert_ne!(a, b);
        assert_eq!(
            a,
            template_hash(&json!({ "spec": { "containers": [{ "image": "a" }] } }))
        );
        assert!(a.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }
}
