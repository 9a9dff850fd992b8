//! Counting finished pods without losing any, after upstream's tracking
//! with finalizers: every pod of a job carries the `job-tracking`
//! finalizer, so it cannot vanish before it is counted. A finished pod is
//! first recorded by uid in `status.uncountedTerminatedPods` (one status
//! write), then its finalizer is removed, and on a later pass the uids
//! whose pods no longer hold the finalizer move into `succeeded`/`failed`.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Value, json};

use super::indexes;
use super::policy::{self, Action};
use crate::controllers::meta;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// Whether the pod still holds the tracking finalizer.
pub fn tracked(pod: &Value) -> bool {
    pod["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|finalizers| finalizers.iter().any(|f| f == TRACKING_FINALIZER))
}

/// Whether removing the finalizer cannot cut short a pod its node is still
/// stopping (skiff removes a deleted object with its last finalizer).
pub fn releasable(pod: &Value) -> bool {
    !meta::is_terminating(pod)
        || meta::pod_finished(pod)
        || pod["metadata"]["deletionGracePeriodSeconds"].as_i64() == Some(0)
}

/// A pod that is being deleted but has not finished.
pub fn stopping(pod: &Value) -> bool {
    meta::is_terminating(pod) && !meta::pod_finished(pod)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
    /// Deleted by suspension: neither a success nor a failure.
    Dropped,
    /// Still running, or stopping before its failure can be judged.
    Open,
}

fn outcome(job: &Value, pod: &Value) -> Outcome {
    match pod["status"]["phase"].as_str() {
        Some("Succeeded") => return Outcome::Succeeded,
        Some("Failed") => return Outcome::Failed,
        _ => {}
    }
    if !meta::is_terminating(pod) {
        return Outcome::Open;
    }
    if job["spec"]["suspend"].as_bool() == Some(true) {
        Outcome::Dropped
    } else if job["spec"]["podFailurePolicy"].is_null() || releasable(pod) {
        // As upstream: a deleted pod that did not succeed failed; with a
        // failure policy, only once its final state is known.
        Outcome::Failed
    } else {
        Outcome::Open
    }
}

/// The job's counts after this pass, and what to do about the pods.
#[derive(Debug, Default)]
pub struct Tally<'a> {
    pub succeeded: u64,
    pub failed: u64,
    pub uncounted_succeeded: Vec<String>,
    pub uncounted_failed: Vec<String>,
    /// Indexed jobs: the indexes that succeeded.
    pub completed: BTreeSet<u64>,
    /// Failures seen for the first time (towards the backoff delay).
    pub new_failures: u32,
    pub new_success: bool,
    /// A FailJob rule of the pod failure policy matched.
    pub fail_job: Option<String>,
    /// Pods whose finalizer may go once the status is written.
    pub release: Vec<&'a Value>,
}

impl Tally<'_> {
    pub fn succeeded_total(&self) -> u64 {
        self.succeeded + self.uncounted_succeeded.len() as u64
    }

    pub fn failed_total(&self) -> u64 {
        self.failed + self.uncounted_failed.len() as u64
    }

    /// Whether every finished pod is counted for good.
    pub fn settled(&self) -> bool {
        self.uncounted_succeeded.is_empty() && self.uncounted_failed.is_empty()
    }

    /// Writes the counts into `status`.
    pub fn write(&self, status: &mut Value, completions: Option<u64>, indexed: bool) {
        status["succeeded"] = json!(self.succeeded);
        status["failed"] = json!(self.failed);
        status["uncountedTerminatedPods"] = if self.settled() {
            json!({})
        } else {
            json!({ "succeeded": self.uncounted_succeeded, "failed": self.uncounted_failed })
        };
        if indexed && completions.is_some() {
            status["completedIndexes"] = json!(indexes::format(&self.completed));
        }
    }
}

/// Counts the pods of `job` (those it controls).
pub fn tally<'a>(job: &Value, pods: &'a [Value], completions: Option<u64>) -> Tally<'a> {
    let status = &job["status"];
    let uids = |list: &str| -> Vec<String> {
        status["uncountedTerminatedPods"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|uid| uid.as_str().map(str::to_owned))
            .collect()
    };
    let by_uid: HashMap<&str, &Value> = pods.iter().map(|pod| (meta::uid(pod), pod)).collect();
    let still_held = |uid: &String| by_uid.get(uid.as_str()).is_some_and(|pod| tracked(pod));
    let (old_succeeded, old_failed) = (uids("succeeded"), uids("failed"));
    let mut tally = Tally {
        succeeded: status["succeeded"].as_u64().unwrap_or(0),
        failed: status["failed"].as_u64().unwrap_or(0),
        completed: indexes::parse(
            status["completedIndexes"].as_str().unwrap_or_default(),
            completions.unwrap_or(0),
        ),
        ..Tally::default()
    };
    let (held, flushed): (Vec<String>, Vec<String>) =
        old_succeeded.iter().cloned().partition(still_held);
    tally.succeeded += flushed.len() as u64;
    tally.uncounted_succeeded = held;
    let (held, flushed): (Vec<String>, Vec<String>) =
        old_failed.iter().cloned().partition(still_held);
    tally.failed += flushed.len() as u64;
    tally.uncounted_failed = held;
    let indexed = job["spec"]["completionMode"] == "Indexed";
    for pod in pods.iter().filter(|pod| tracked(pod)) {
        let uid = meta::uid(pod).to_owned();
        let recorded = old_succeeded.contains(&uid) || old_failed.contains(&uid);
        let counted = match outcome(job, pod) {
            Outcome::Open => continue,
            _ if recorded => true,
            Outcome::Succeeded => {
                if indexed && let Some(index) = indexes::of_pod(pod, completions.unwrap_or(0)) {
                    tally.completed.insert(index);
                }
                tally.uncounted_succeeded.push(uid);
                tally.new_success = true;
                true
            }
            Outcome::Failed => match policy::action(job, pod) {
                Action::Ignore => false,
                action => {
                    if let Action::FailJob(message) = action {
                        tally.fail_job.get_or_insert(message);
                    }
                    tally.uncounted_failed.push(uid);
                    tally.new_failures += 1;
                    true
                }
            },
            Outcome::Dropped => false,
        };
        if releasable(pod) || !counted {
            tally.release.push(pod);
        }
    }
    tally.release.retain(|pod| releasable(pod));
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, phase: &str, tracked: bool) -> Value {
        json!({
            "metadata": {
                "name": uid, "uid": uid,
                "finalizers": if tracked { json!([TRACKING_FINALIZER]) } else { json!([]) },
            },
            "status": { "phase": phase },
        })
    }

    #[test]
    fn finished_pods_are_recorded_then_counted_once() {
        let job = json!({ "spec": {}, "status": { "succeeded": 1 } });
        let pods = [
            pod("a", "Succeeded", true),
            pod("b", "Failed", true),
            pod("c", "Running", true),
        ];
        let first = tally(&job, &pods, Some(3));
        assert_eq!((first.succeeded, first.failed), (1, 0));
        assert_eq!(first.uncounted_succeeded, ["a"]);
        assert_eq!(first.uncounted_failed, ["b"]);
        assert_eq!((first.succeeded_total(), first.failed_total()), (2, 1));
        assert_eq!(first.release.len(), 2);
        let mut status = json!({});
        first.write(&mut status, Some(3), false);
        // The finalizers went; pod b was deleted meanwhile.
        let job = json!({ "spec": {}, "status": status });
        let pods = [pod("a", "Succeeded", false), pod("c", "Running", true)];
        let second = tally(&job, &pods, Some(3));
        assert_eq!((second.succeeded, second.failed), (2, 1));
        assert!(second.settled());
        assert_eq!(second.new_failures, 0);
    }

    #[test]
    fn a_pod_stopping_with_grace_is_counted_but_kept() {
        let job = json!({ "spec": {}, "status": {} });
        let mut stopping = pod("s", "Running", true);
        stopping["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        stopping["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        let pods = [stopping];
        let counted = tally(&job, &pods, Some(1));
        assert_eq!(counted.uncounted_failed, ["s"]);
        assert!(counted.release.is_empty());
    }

    #[test]
    fn indexed_successes_fill_completed_indexes() {
        let job = json!({ "spec": { "completionMode": "Indexed" }, "status": { "completedIndexes": "0" } });
        let mut done = pod("x", "Succeeded", true);
        done["metadata"]["annotations"] = json!({ indexes::INDEX_ANNOTATION: "2" });
        let pods = [done];
        let counted = tally(&job, &pods, Some(3));
        let mut status = json!({});
        counted.write(&mut status, Some(3), true);
        assert_eq!(status["completedIndexes"], "0,2");
    }
}
