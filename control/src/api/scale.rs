//! The `scale` subresource of Deployments, ReplicaSets, StatefulSets and
//! ReplicationControllers (`autoscaling/v1` Scale), which `kubectl scale`
//! reads and patches.

use serde_json::{Value, json};

use super::status::ApiError;

/// The Scale view of `object`.
pub fn of(object: &Value) -> Value {
    let metadata = &object["metadata"];
    // A ReplicationController's selector is the label map itself.
    let labels = match object["kind"].as_str() {
        Some("ReplicationController") => &object["spec"]["selector"],
        _ => &object["spec"]["selector"]["matchLabels"],
    };
    let selector = labels
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
            "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": { "replicas": object["spec"]["replicas"].as_i64().unwrap_or(1) },
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector,
        },
    })
}

/// `object` scaled as `scale` says; a new spec is a new generation.
pub fn apply(mut object: Value, scale: &Value) -> Result<Value, ApiError> {
    let replicas = scale["spec"]["replicas"]
        .as_i64()
        .filter(|replicas| *replicas >= 0)
        .ok_or_else(|| ApiError::bad_request("spec.replicas must be a number, 0 or more"))?;
    if object["spec"]["replicas"].as_i64() != Some(replicas) {
        object["spec"]["replicas"] = json!(replicas);
        let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
        object["metadata"]["generation"] = json!(generation + 1);
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_reads_and_writes_replicas() {
        let deployment = json!({
            "metadata": { "name": "web", "generation": 2, "resourceVersion": "9" },
            "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } } },
            "status": { "replicas": 3 },
        });
        let scale = of(&deployment);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["selector"], "app=web");
        let scaled = apply(deployment, &json!({ "spec": { "replicas": 5 } })).unwrap();
        assert_eq!(scaled["spec"]["replicas"], 5);
        assert_eq!(scaled["metadata"]["generation"], 3);
        assert!(apply(scaled, &json!({ "spec": {} })).is_err());
        let controller = json!({
            "kind": "ReplicationController",
            "spec": { "replicas": 1, "selector": { "app": "redis" } },
        });
        assert_eq!(of(&controller)["status"]["selector"], "app=redis");
    }
}
