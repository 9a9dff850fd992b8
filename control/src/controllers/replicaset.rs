//! The ReplicaSet controller, which also serves ReplicationControllers
//! (their selector is a plain label map, but pods are theirs by controller
//! reference either way): keeps `spec.replicas` active pods made from the
//! template (named `<owner>-<5 random>`, controlled by the owner) and
//! reports how many there are, ready, and available (Ready for
//! `spec.minReadySeconds`; the periodic resync sees a pod become so).

use std::cmp::Reverse;

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
    let mut written = Vec::new();
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
        if active.len() < wanted {
            for _ in active.len()..wanted {
                match create_pod(context, replicated, &replica_set).await {
                    // Its namespace is going away: so will it.
                    Err(ControllerError::Client(error)) if error.is_forbidden() => break,
                    other => other?,
                }
            }
            written.push(Kind::Pod);
        } else if active.len() > wanted {
            for pod in victims(active.clone(), active.len() - wanted) {
                context.client.delete(Kind::Pod, pod, None).await?;
            }
            written.push(Kind::Pod);
        }
        if write_status(context, replicated.kind, &replica_set, &active).await? {
            written.push(replicated.kind);
        }
    }
    Ok(written)
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

/// Writes the counts when they changed; whether it wrote.
async fn write_status(
    context: &Context,
    kind: Kind,
    replica_set: &Value,
    active: &[&Value],
) -> Result<bool, ControllerError> {
    let ready = active.iter().filter(|pod| meta::pod_ready(pod)).count();
    let min_ready = replica_set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let now = meta::timestamp_now();
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
    if status == replica_set["status"] {
        return Ok(false);
    }
    let mut updated = replica_set.clone();
    updated["status"] = status;
    Ok(written(context.client.update_status(kind, &updated).await)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
