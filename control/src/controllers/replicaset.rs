//! The ReplicaSet controller, which also serves ReplicationControllers
//! (their selector is a plain label map, but pods are theirs by controller
//! reference either way): keeps `spec.replicas` active pods made from the
//! template (named `<owner>-<5 random>`, controlled by the owner) and
//! reports how many there are, ready, and available (Ready for
//! `spec.minReadySeconds`; the periodic resync sees a pod become so).

use std::cmp::Reverse;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tracing::info;

use super::client::written;
use super::kind::Kind;
use super::{Context, Controller, ControllerError, events, meta};

/// What differs between the two kinds this controller serves.
struct Replicated {
    kind: Kind,
    /// The kind's name in events.
    name: &'static str,
    /// The component events come from.
    component: &'static str,
}

const REPLICA_SET: Replicated = Replicated {
    kind: Kind::ReplicaSet,
    name: "ReplicaSet",
    component: "replicaset-controller",
};

const REPLICATION_CONTROLLER: Replicated = Replicated {
    kind: Kind::ReplicationController,
    name: "ReplicationController",
    component: "replication-controller",
};

/// The condition of a ReplicaSet (or ReplicationController) whose pods
/// cannot be created.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub struct ReplicaSets;

impl Controller for ReplicaSets {
    const NAME: &'static str = "replicaset";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        reconcile(context, &REPLICA_SET).await
    }
}

pub struct ReplicationControllers;

impl Controller for ReplicationControllers {
    const NAME: &'static str = "replicationcontroller";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        reconcile(context, &REPLICATION_CONTROLLER).await
    }
}

async fn reconcile(
    context: &Context,
    replicated: &Replicated,
) -> Result<Vec<Kind>, ControllerError> {
    let mut wrote = Vec::new();
    for replica_set in context.cache.list(replicated.kind) {
        if meta::is_terminating(&replica_set) {
            continue;
        }
        let pods: Vec<Value> = context
            .cache
            .list_in(Kind::Pod, meta::namespace(&replica_set))
            .into_iter()
            .filter(|pod| meta::controlled_by(pod, meta::uid(&replica_set)))
            .collect();
        let active: Vec<&Value> = pods.iter().filter(|pod| meta::pod_active(pod)).collect();
        let wanted = replicas(&replica_set);
        let mut failure = None;
        if active.len() < wanted {
            for _ in active.len()..wanted {
                match create_pod(context, replicated, &replica_set).await {
                    Ok(()) => {}
                    // Refused (a quota, an invalid template): said in the
                    // status and an event, tried again on later passes.
                    // Unless its namespace is going away: so will it.
                    Err(ControllerError::Client(error)) if error.code < 500 => {
                        if !namespace_terminating(context, &replica_set) {
                            failure = Some(error.message);
                        }
                        break;
                    }
                    Err(error) => return Err(error),
                }
            }
            wrote.push(Kind::Pod);
        } else if active.len() > wanted {
            for pod in victims(active.clone(), active.len() - wanted) {
                context.client.delete(Kind::Pod, pod, None).await?;
            }
            wrote.push(Kind::Pod);
        }
        let mut status = status(&replica_set, &active, meta::timestamp_now());
        if replica_failure(&mut status, failure.as_deref()) {
            let message = format!("Error creating: {}", failure.unwrap_or_default());
            events::record(
                context,
                &replica_set,
                replicated.name,
                "Warning",
                "FailedCreate",
                &message,
                replicated.component,
            )
            .await;
        }
        if status != replica_set["status"] {
            let mut updated = replica_set.clone();
            updated["status"] = status;
            if written(
                context
                    .client
                    .update_status(replicated.kind, &updated)
                    .await,
            )? {
                wrote.push(replicated.kind);
            }
        }
    }
    Ok(wrote)
}

/// `spec.replicas`, 1 when unset.
pub fn replicas(object: &Value) -> usize {
    object["spec"]["replicas"]
        .as_u64()
        .map_or(1, |replicas| replicas as usize)
}

async fn create_pod(
    context: &Context,
    replicated: &Replicated,
    replica_set: &Value,
) -> Result<(), ControllerError> {
    let namespace = meta::namespace(replica_set);
    let template = &replica_set["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["generateName"] = json!(format!("{}-", meta::name(replica_set)));
    metadata["namespace"] = json!(namespace);
    metadata["ownerReferences"] = json!([meta::controller_reference(replica_set)]);
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template["spec"],
    });
    let created = context
        .client
        .create(Kind::Pod, Some(namespace), &pod)
        .await?;
    let message = format!("Created pod: {}", meta::name(&created));
    info!(
        kind = replicated.name,
        owner = meta::name(replica_set),
        pod = meta::name(&created),
        "created pod"
    );
    events::record(
        context,
        replica_set,
        replicated.name,
        "Normal",
        "SuccessfulCreate",
        &message,
        replicated.component,
    )
    .await;
    Ok(())
}

/// The `count` pods to delete when scaling down, as Kubernetes picks them:
/// unscheduled before scheduled, not ready before ready, newest first.
fn victims(mut pods: Vec<&Value>, count: usize) -> Vec<&Value> {
    pods.sort_by_key(|pod| {
        (
            !meta::node_name(pod).is_empty(),
            meta::pod_ready(pod),
            Reverse(
                pod["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ),
        )
    });
    pods.truncate(count);
    pods
}

fn namespace_terminating(context: &Context, object: &Value) -> bool {
    context
        .cache
        .get(Kind::Namespace, None, meta::namespace(object))
        .is_some_and(|namespace| meta::is_terminating(&namespace))
}

/// The status the pods make, at `now`.
fn status(replica_set: &Value, active: &[&Value], now: Timestamp) -> Value {
    let ready = active.iter().filter(|pod| meta::pod_ready(pod)).count();
    let min_ready = replica_set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let available = active
        .iter()
        .filter(|pod| meta::pod_available(pod, min_ready, now))
        .count();
    let mut status = replica_set["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["replicas"] = json!(active.len());
    status["fullyLabeledReplicas"] = json!(active.len());
    status["readyReplicas"] = json!(ready);
    status["availableReplicas"] = json!(available);
    status["observedGeneration"] = replica_set["metadata"]["generation"].clone();
    status
}

/// The ReplicaFailure condition: set while pods cannot be created (with
/// the API's refusal), gone after a pass without failure. Whether the
/// failure is new (not the one already reported).
fn replica_failure(status: &mut Value, failure: Option<&str>) -> bool {
    let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    let reported = conditions
        .iter()
        .any(|c| c["type"] == REPLICA_FAILURE && failure.is_some_and(|m| c["message"] == m));
    if reported {
        return false;
    }
    conditions.retain(|c| c["type"] != REPLICA_FAILURE);
    if let Some(message) = failure {
        conditions.push(json!({
            "type": REPLICA_FAILURE,
            "status": "True",
            "reason": "FailedCreate",
            "message": message,
            "lastTransitionTime": meta::now(),
        }));
    }
    if let Some(status) = status.as_object_mut() {
        if conditions.is_empty() {
            status.remove("conditions");
        } else {
            status.insert("conditions".into(), json!(conditions));
        }
    }
    failure.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_reported_once_and_cleared() {
        let mut status = json!({ "replicas": 0 });
        assert!(replica_failure(&mut status, Some("exceeded quota")));
        assert_eq!(status["conditions"][0]["reason"], "FailedCreate");
        let reported = status.clone();
        assert!(!replica_failure(&mut status, Some("exceeded quota")));
        assert_eq!(status, reported);
        assert!(replica_failure(&mut status, Some("another")));
        assert_eq!(status["conditions"].as_array().unwrap().len(), 1);
        assert!(!replica_failure(&mut status, None));
        assert!(status.get("conditions").is_none());
    }

    #[test]
    fn available_waits_for_min_ready_seconds() {
        let pod = json!({ "status": { "conditions": [{
            "type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z",
        }] } });
        let replica_set =
            json!({ "spec": { "minReadySeconds": 5 }, "metadata": { "generation": 1 } });
        let at = |text: &str| text.parse::<Timestamp>().unwrap();
        let early = status(&replica_set, &[&pod], at("2024-01-01T00:00:03Z"));
        assert_eq!(
            (
                early["readyReplicas"].clone(),
                early["availableReplicas"].clone()
            ),
            (json!(1), json!(0))
        );
        let late = status(&replica_set, &[&pod], at("2024-01-01T00:00:06Z"));
        assert_eq!(late["availableReplicas"], 1);
    }

    #[test]
    fn scale_down_removes_the_least_useful_pods() {
        let pod = |name: &str, node: &str, ready: bool, created: &str| {
            json!({
                "metadata": { "name": name, "creationTimestamp": created },
                "spec": { "nodeName": node },
                "status": { "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] },
            })
        };
        let pods = [
            pod("old-ready", "n1", true, "2024-01-01T00:00:00Z"),
            pod("new-ready", "n1", true, "2024-01-02T00:00:00Z"),
            pod("not-ready", "n1", false, "2024-01-01T00:00:00Z"),
            pod("pending", "", false, "2024-01-01T00:00:00Z"),
        ];
        let names: Vec<&str> = victims(pods.iter().collect(), 3)
            .into_iter()
            .map(meta::name)
            .collect();
        assert_eq!(names, ["pending", "not-ready", "new-ready"]);
    }
}
