//! Pods: they start Pending, serve their containers' logs and a binding to
//! a node, and are deleted gracefully: a DELETE marks a running pod
//! terminating (`deletionTimestamp`, `deletionGracePeriodSeconds`) and its
//! node agent removes it once the containers have stopped (with a DELETE of
//! grace 0). Names and paths are validated (`pod_validation`).

use serde_json::{Value, json};

use super::env::Env;
use super::pod_validation;
use super::refusal::Refusal;
use super::strategy::{Strategy, Subresource};
use crate::clock;

#[derive(Debug)]
pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status, Subresource::Log, Subresource::Binding]
    }

    fn initial_status(&self) -> Option<Value> {
        Some(json!({ "phase": "Pending" }))
    }

    fn validate(&self, _env: &Env, pod: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(pod_validation::validate(pod)?)
    }

    fn validate_update(&self, _env: &Env, pod: &Value, _old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(pod_validation::validate(pod)?)
    }

    fn graceful_deletion(&self, pod: &Value, requested: Option<i64>) -> Option<i64> {
        Some(grace_period(pod, requested)).filter(|&grace| grace > 0)
    }

    fn mark_deleting(&self, pod: Value, grace: i64) -> Value {
        mark_terminating(pod, grace)
    }

    /// Assigns the pod to `node`, once.
    fn bind(&self, mut pod: Value, node: &str) -> Result<Value, Refusal> {
        match pod["spec"]["nodeName"].as_str() {
            Some(bound) if !bound.is_empty() => {
                let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                Err(Refusal::Conflict(format!(
                    "pod {name} is already assigned to node \"{bound}\""
                )))
            }
            _ => {
                pod["spec"]["nodeName"] = json!(node);
                Ok(pod)
            }
        }
    }
}

/// What kube-apiserver defaults `terminationGracePeriodSeconds` to.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// The grace period a DELETE gives `pod`: the request's, else the pod's own,
/// and none for a pod no node runs (unscheduled or finished): there is
/// nothing to stop.
fn grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let scheduled = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|node| !node.is_empty());
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        return 0;
    }
    requested
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(DEFAULT_GRACE_SECONDS)
        .max(0)
}

/// `pod` marked terminating with `grace` seconds; a pod already terminating
/// only ever gets a shorter grace period.
fn mark_terminating(mut pod: Value, grace: i64) -> Value {
    let current = pod["metadata"]["deletionGracePeriodSeconds"].as_i64();
    if current.is_some_and(|current| current <= grace) {
        return pod;
    }
    pod["metadata"]["deletionTimestamp"] = clock::seconds_from_now(grace);
    pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    pod
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_running_pods_get_a_grace_period() {
        let unscheduled = json!({ "spec": {} });
        assert_eq!(grace_period(&unscheduled, Some(10)), 0);
        let running = json!({ "spec": { "nodeName": "n1", "terminationGracePeriodSeconds": 5 } });
        assert_eq!(grace_period(&running, None), 5);
        assert_eq!(grace_period(&running, Some(0)), 0);
        assert_eq!(
            grace_period(&json!({ "spec": { "nodeName": "n1" } }), None),
            30
        );
        let done = json!({ "spec": { "nodeName": "n1" }, "status": { "phase": "Succeeded" } });
        assert_eq!(grace_period(&done, None), 0);
    }

    #[test]
    fn a_pod_is_bound_once() {
        let pod = json!({ "metadata": { "name": "p" }, "spec": {} });
        let bound = PodStrategy.bind(pod, "n1").unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(
            PodStrategy.bind(bound, "n2"),
            Err(Refusal::Conflict(
                "pod p is already assigned to node \"n1\"".to_owned()
            ))
        );
    }

    #[test]
    fn terminating_pods_only_shorten_their_grace() {
        let pod = mark_terminating(json!({ "metadata": { "name": "p" } }), 30);
        assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(
            pod["metadata"]["deletionTimestamp"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert_eq!(mark_terminating(pod.clone(), 40), pod);
        let shorter = mark_terminating(pod, 5);
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 5);
    }
}
