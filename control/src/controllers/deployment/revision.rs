//! Revision history, as kube-controller-manager keeps it: every ReplicaSet
//! of a Deployment carries the revision it last served
//! (`deployment.kubernetes.io/revision`); one a rollback brings back takes
//! the next number and remembers its earlier ones
//! (`deployment.kubernetes.io/revision-history`). The Deployment carries
//! its current ReplicaSet's number. `kubectl rollout history|undo` read
//! these off the ReplicaSets.

use serde_json::{Map, Value, json};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";

/// Kubernetes caps the history annotation at this many characters,
/// dropping the oldest numbers first.
const HISTORY_MAX_CHARS: usize = 2000;

/// The Deployment's annotations that are not copied to its ReplicaSets:
/// the revision bookkeeping and what only describes the Deployment.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// An object's revision; 0 when it has none (or not a number).
pub fn of(object: &Value) -> u64 {
    object["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}

/// The number a new template gets: one above every other ReplicaSet's.
pub fn next<'a>(others: impl IntoIterator<Item = &'a Value>) -> u64 {
    others.into_iter().map(of).max().unwrap_or(0) + 1
}

/// The annotations of the Deployment's current ReplicaSet: the
/// Deployment's own (those it may pass on, `kubernetes.io/change-cause`
/// among them) over what the ReplicaSet has, and `revision` when that is
/// above the ReplicaSet's, its earlier number then added to its history.
pub fn annotations(deployment: &Value, current: &Value, revision: u64) -> Map<String, Value> {
    let mut annotations = current.as_object().cloned().unwrap_or_default();
    if let Some(own) = deployment["metadata"]["annotations"].as_object() {
        for (key, value) in own {
            if !NOT_COPIED.contains(&key.as_str()) {
                annotations.insert(key.clone(), value.clone());
            }
        }
    }
    let had = annotations.get(REVISION).and_then(Value::as_str);
    let old = had.and_then(|text| text.parse::<u64>().ok()).unwrap_or(0);
    if old < revision {
        if had.is_some() {
            let history = annotations
                .get(REVISION_HISTORY)
                .and_then(Value::as_str)
                .unwrap_or_default();
            annotations.insert(
                REVISION_HISTORY.to_owned(),
                json!(appended(history, &old.to_string())),
            );
        }
        annotations.insert(REVISION.to_owned(), json!(revision.to_string()));
    }
    annotations
}

/// `history` (comma-separated) with `revision` added, the oldest numbers
/// dropped to stay within the cap.
fn appended(history: &str, revision: &str) -> String {
    let mut numbers: Vec<&str> = history.split(',').filter(|n| !n.is_empty()).collect();
    numbers.push(revision);
    let length = |numbers: &[&str]| numbers.iter().map(|n| n.len() + 1).sum::<usize>() - 1;
    while numbers.len() > 1 && length(&numbers) > HISTORY_MAX_CHARS {
        numbers.remove(0);
    }
    numbers.join(",")
}

/// The old ReplicaSets to delete so that at most `limit` remain: the
/// lowest revisions first, skipping those that still have pods, are
/// scaled above 0, or whose latest spec their controller has not seen.
pub fn beyond_limit<'a>(old: &[&'a Value], limit: usize) -> Vec<&'a Value> {
    let mut alive: Vec<&Value> = old
        .iter()
        .copied()
        .filter(|rs| rs["metadata"]["deletionTimestamp"].is_null())
        .collect();
    let Some(excess) = alive.len().checked_sub(limit) else {
        return Vec::new();
    };
    alive.sort_by_key(|rs| {
        (
            of(rs),
            rs["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    });
    alive
        .into_iter()
        .take(excess)
        .filter(|rs| {
            let number = |value: &Value| value.as_i64().unwrap_or(0);
            rs["spec"]["replicas"].as_i64() == Some(0)
                && number(&rs["status"]["replicas"]) == 0
                && number(&rs["metadata"]["generation"])
                    <= number(&rs["status"]["observedGeneration"])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(revision: &str) -> Value {
        json!({ "metadata": { "annotations": { REVISION: revision } } })
    }

    #[test]
    fn a_new_template_takes_the_next_number() {
        assert_eq!(next([]), 1);
        assert_eq!(next(&[rs("1"), rs("3"), rs("x")]), 4);
    }

    #[test]
    fn a_reused_replica_set_takes_the_next_number_and_keeps_its_history() {
        let deployment = json!({ "metadata": { "annotations": {
            "kubernetes.io/change-cause": "undo",
            REVISION: "3",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
        } } });
        let current = json!({ REVISION: "2", REVISION_HISTORY: "1" });
        let annotations = annotations(&deployment, &current, 4);
        assert_eq!(annotations[REVISION], "4");
        assert_eq!(annotations[REVISION_HISTORY], "1,2");
        assert_eq!(annotations["kubernetes.io/change-cause"], "undo");
        assert!(!annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        // Already the newest: nothing changes.
        let same = super::annotations(&deployment, &json!({ REVISION: "4" }), 4);
        assert_eq!(same[REVISION], "4");
        assert!(!same.contains_key(REVISION_HISTORY));
        // A new ReplicaSet starts without history.
        let fresh = super::annotations(&deployment, &Value::Null, 1);
        assert_eq!(fresh[REVISION], "1");
        assert!(!fresh.contains_key(REVISION_HISTORY));
    }

    #[test]
    fn history_drops_its_oldest_numbers_beyond_the_cap() {
        let long = vec!["12345"; 400].join(",");
        let appended = appended(&long, "9");
        assert!(appended.len() <= HISTORY_MAX_CHARS);
        assert!(appended.ends_with(",9"));
    }

    #[test]
    fn cleanup_deletes_the_lowest_revisions_that_are_scaled_down() {
        let old = |revision: &str, replicas: i64| {
            json!({
                "metadata": { "name": format!("rs-{revision}"), "annotations": { REVISION: revision }, "generation": 1 },
                "spec": { "replicas": replicas },
                "status": { "replicas": replicas, "observedGeneration": 1 },
            })
        };
        let sets = [old("4", 0), old("1", 0), old("2", 1), old("3", 0)];
        let refs: Vec<&Value> = sets.iter().collect();
        let names = |victims: Vec<&Value>| -> Vec<String> {
            victims
                .iter()
                .map(|rs| rs["metadata"]["name"].as_str().unwrap().to_owned())
                .collect()
        };
        // Two too many: revisions 1 and 2, but 2 still runs a pod.
        assert_eq!(names(beyond_limit(&refs, 2)), ["rs-1"]);
        assert_eq!(names(beyond_limit(&refs, 0)), ["rs-1", "rs-3", "rs-4"]);
        assert!(beyond_limit(&refs, 10).is_empty());
    }
}
