//! The Deployment's status and conditions, as kube-controller-manager's
//! `syncRolloutStatus` and `checkPausedConditions` keep them: Available
//! against maxUnavailable, and Progressing — True while the rollout
//! advances (NewReplicaSetCreated, FoundNewReplicaSet, ReplicaSetUpdated,
//! NewReplicaSetAvailable), Unknown while paused, False with
//! ProgressDeadlineExceeded after progressDeadlineSeconds without progress
//! (what `kubectl rollout status` fails on).

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::super::meta;
use super::super::replicaset::REPLICA_FAILURE;

const PROGRESSING: &str = "Progressing";
const AVAILABLE: &str = "Available";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";

/// Pod counts over the Deployment's ReplicaSets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Active pods.
    pub replicas: usize,
    /// Active pods of the current ReplicaSet.
    pub updated: usize,
    pub ready: usize,
    /// Ready for minReadySeconds.
    pub available: usize,
}

impl Counts {
    fn of(status: &Value) -> Self {
        let number = |field: &str| status[field].as_u64().unwrap_or(0) as usize;
        Self {
            replicas: number("replicas"),
            updated: number("updatedReplicas"),
            ready: number("readyReplicas"),
            available: number("availableReplicas"),
        }
    }
}

/// What this pass knows about the rollout besides the counts.
pub struct Pass<'a> {
    pub desired: usize,
    pub max_unavailable: usize,
    /// The ReplicaSet of the Deployment's template, if it exists.
    pub current: Option<&'a str>,
    /// That ReplicaSet was created in this pass.
    pub created: bool,
    /// The ReplicaFailure condition of one of its ReplicaSets (the
    /// current one's first), which the Deployment shows as its own.
    pub replica_failure: Option<&'a Value>,
    pub now: Timestamp,
}

/// `spec.progressDeadlineSeconds`, unless unset or "never" (MaxInt32).
fn deadline(deployment: &Value) -> Option<i64> {
    deployment["spec"]["progressDeadlineSeconds"]
        .as_i64()
        .filter(|seconds| *seconds != i64::from(i32::MAX))
}

/// The Deployment's new status.
pub fn status(deployment: &Value, counts: Counts, pass: &Pass) -> Value {
    let previous = &deployment["status"];
    let mut conditions = Conditions {
        list: previous["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        now: meta::time(pass.now),
    };
    let deadline = deadline(deployment);
    let paused = deployment["spec"]["paused"].as_bool() == Some(true);
    let name = meta::name(deployment);
    if deadline.is_some() {
        paused_condition(&mut conditions, paused);
    }
    if let (false, Some(_), Some(current)) = (paused, deadline, pass.current) {
        if pass.created {
            let message = format!("Created new replica set \"{current}\"");
            conditions.set(PROGRESSING, "True", "NewReplicaSetCreated", message);
        } else if conditions.get(PROGRESSING).is_none() {
            let message = format!("Found new replica set \"{current}\"");
            conditions.set(PROGRESSING, "True", "FoundNewReplicaSet", message);
        }
    }
    let minimum = pass.desired.saturating_sub(pass.max_unavailable);
    if counts.available >= minimum {
        let message = "Deployment has minimum availability.".to_owned();
        conditions.set(AVAILABLE, "True", "MinimumReplicasAvailable", message);
    } else {
        let message = "Deployment does not have minimum availability.".to_owned();
        conditions.set(AVAILABLE, "False", "MinimumReplicasUnavailable", message);
    }
    if !paused {
        match deadline {
            None => conditions.remove(PROGRESSING),
            Some(deadline) => progress(
                &mut conditions,
                Counts::of(previous),
                counts,
                pass,
                deadline,
                name,
            ),
        }
    }
    match pass.replica_failure {
        Some(failure) => {
            let text = |field: &str| failure[field].as_str().unwrap_or_default().to_owned();
            conditions.set(
                REPLICA_FAILURE,
                &text("status"),
                &text("reason"),
                text("message"),
            );
        }
        None => conditions.remove(REPLICA_FAILURE),
    }
    json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": counts.replicas,
        "updatedReplicas": counts.updated,
        "readyReplicas": counts.ready,
        "availableReplicas": counts.available,
        "unavailableReplicas": pass.desired.saturating_sub(counts.available),
        "conditions": conditions.list,
    })
}

/// Progressing Unknown while paused, and again (DeploymentResumed) when
/// resumed, so the deadline counts from the resumption; a timeout stays.
fn paused_condition(conditions: &mut Conditions, paused: bool) {
    let reason = conditions
        .get(PROGRESSING)
        .and_then(|c| c["reason"].as_str())
        .map(str::to_owned);
    if reason.as_deref() == Some(TIMED_OUT) {
        return;
    }
    let paused_before = reason.as_deref() == Some(PAUSED);
    if paused && !paused_before {
        conditions.set(
            PROGRESSING,
            "Unknown",
            PAUSED,
            "Deployment is paused".into(),
        );
    } else if !paused && paused_before {
        let message = "Deployment is resumed".to_owned();
        conditions.set(PROGRESSING, "Unknown", "DeploymentResumed", message);
    }
}

/// The Progressing condition of a rollout that is not paused.
fn progress(
    conditions: &mut Conditions,
    before: Counts,
    now: Counts,
    pass: &Pass,
    deadline: i64,
    deployment: &str,
) {
    let reason = |conditions: &Conditions| {
        conditions
            .get(PROGRESSING)
            .and_then(|c| c["reason"].as_str())
            .map(str::to_owned)
    };
    // A finished rollout is not watched again until something changes.
    if now.replicas == now.updated && reason(conditions).as_deref() == Some(NEW_RS_AVAILABLE) {
        return;
    }
    let subject = match pass.current {
        Some(current) => format!("ReplicaSet \"{current}\""),
        None => format!("Deployment \"{deployment}\""),
    };
    let complete = now.updated == pass.desired
        && now.replicas == pass.desired
        && now.available == pass.desired;
    let advanced = now.updated > before.updated
        || now.replicas - now.updated.min(now.replicas)
            < before.replicas - before.updated.min(before.replicas)
        || now.ready > before.ready
        || now.available > before.available;
    if complete {
        let message = format!("{subject} has successfully progressed.");
        conditions.set(PROGRESSING, "True", NEW_RS_AVAILABLE, message);
    } else if advanced {
        // Progress refreshes lastUpdateTime even with the same reason.
        let transitioned = conditions
            .get(PROGRESSING)
            .filter(|c| c["status"] == "True")
            .map(|c| c["lastTransitionTime"].clone());
        conditions.remove(PROGRESSING);
        let message = format!("{subject} is progressing.");
        conditions.set(PROGRESSING, "True", "ReplicaSetUpdated", message);
        if let (Some(transitioned), Some(last)) = (transitioned, conditions.list.last_mut()) {
            last["lastTransitionTime"] = transitioned;
        }
    } else if timed_out(conditions.get(PROGRESSING), deadline, pass.now) {
        let message = format!("{subject} has timed out progressing.");
        conditions.set(PROGRESSING, "False", TIMED_OUT, message);
    }
}

/// Whether `deadline` seconds passed since the rollout last progressed
/// (the Progressing condition's lastUpdateTime).
fn timed_out(progressing: Option<&Value>, deadline: i64, now: Timestamp) -> bool {
    let Some(progressing) = progressing else {
        return false;
    };
    match progressing["reason"].as_str() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => meta::parse_time(&progressing["lastUpdateTime"])
            .is_some_and(|from| from.as_second().saturating_add(deadline) < now.as_second()),
    }
}

/// A status's conditions, changed as Kubernetes' `SetDeploymentCondition`
/// does.
struct Conditions {
    list: Vec<Value>,
    now: Value,
}

impl Conditions {
    fn get(&self, kind: &str) -> Option<&Value> {
        self.list.iter().find(|c| c["type"] == kind)
    }

    fn remove(&mut self, kind: &str) {
        self.list.retain(|c| c["type"] != kind);
    }

    /// Sets a condition; one of the same status and reason stays as it is,
    /// one of the same status keeps its transition time.
    fn set(&mut self, kind: &str, status: &str, reason: &str, message: String) {
        let mut transitioned = self.now.clone();
        if let Some(old) = self.get(kind) {
            if old["status"] == status && old["reason"] == reason {
                return;
            }
            if old["status"] == status {
                transitioned = old["lastTransitionTime"].clone();
            }
        }
        self.remove(kind);
        self.list.push(json!({
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastUpdateTime": self.now,
            "lastTransitionTime": transitioned,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn deployment(paused: bool, status: Value) -> Value {
        json!({
            "metadata": { "name": "web", "generation": 2 },
            "spec": { "replicas": 2, "paused": paused, "progressDeadlineSeconds": 10 },
            "status": status,
        })
    }

    fn pass(now: Timestamp) -> Pass<'static> {
        Pass {
            desired: 2,
            max_unavailable: 0,
            current: Some("web-abc"),
            created: false,
            replica_failure: None,
            now,
        }
    }

    fn progressing(status: &Value) -> (String, String) {
        let condition = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == PROGRESSING)
            .unwrap();
        (
            condition["status"].as_str().unwrap().to_owned(),
            condition["reason"].as_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn a_stuck_rollout_times_out_after_its_deadline() {
        let mut created = pass(at(0));
        created.created = true;
        let status = super::status(&deployment(false, json!({})), Counts::default(), &created);
        assert_eq!(
            progressing(&status),
            ("True".into(), "NewReplicaSetCreated".into())
        );
        // Its pods are made, and never become ready.
        let stuck = Counts {
            replicas: 2,
            updated: 2,
            ready: 0,
            available: 0,
        };
        let status = super::status(&deployment(false, status), stuck, &pass(at(1)));
        assert_eq!(
            progressing(&status),
            ("True".into(), "ReplicaSetUpdated".into())
        );
        let later = super::status(&deployment(false, status.clone()), stuck, &pass(at(11)));
        assert_eq!(
            progressing(&later),
            ("True".into(), "ReplicaSetUpdated".into())
        );
        let late = super::status(&deployment(false, status), stuck, &pass(at(12)));
        assert_eq!(progressing(&late), ("False".into(), TIMED_OUT.into()));
        // It stays failed until the rollout progresses again.
        let still = super::status(&deployment(false, late.clone()), stuck, &pass(at(60)));
        assert_eq!(progressing(&still).1, TIMED_OUT);
        let one_ready = Counts {
            ready: 1,
            available: 1,
            ..stuck
        };
        let again = super::status(&deployment(false, late), one_ready, &pass(at(61)));
        assert_eq!(
            progressing(&again),
            ("True".into(), "ReplicaSetUpdated".into())
        );
    }

    #[test]
    fn progress_moves_the_deadline() {
        let before = Counts {
            replicas: 2,
            updated: 2,
            ready: 0,
            available: 0,
        };
        let previous = json!({ "replicas": 2, "updatedReplicas": 2 });
        let status = super::status(&deployment(false, previous), before, &pass(at(0)));
        assert_eq!(progressing(&status).1, "FoundNewReplicaSet");
        let one_ready = Counts {
            ready: 1,
            available: 1,
            ..before
        };
        let status = super::status(&deployment(false, status), one_ready, &pass(at(9)));
        assert_eq!(progressing(&status).1, "ReplicaSetUpdated");
        let status = super::status(&deployment(false, status), one_ready, &pass(at(15)));
        assert_eq!(
            progressing(&status),
            ("True".into(), "ReplicaSetUpdated".into())
        );
        let done = Counts {
            ready: 2,
            available: 2,
            ..before
        };
        let status = super::status(&deployment(false, status), done, &pass(at(30)));
        assert_eq!(
            progressing(&status),
            ("True".into(), NEW_RS_AVAILABLE.into())
        );
        assert_eq!(status["availableReplicas"], 2);
    }

    #[test]
    fn replica_failures_show_on_the_deployment() {
        let failure = json!({
            "type": REPLICA_FAILURE, "status": "True", "reason": "FailedCreate", "message": "exceeded quota",
        });
        let mut failing = pass(at(0));
        failing.replica_failure = Some(&failure);
        let status = super::status(&deployment(false, json!({})), Counts::default(), &failing);
        let shown = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == REPLICA_FAILURE)
            .unwrap();
        assert_eq!(shown["message"], "exceeded quota");
        let status = super::status(&deployment(false, status), Counts::default(), &pass(at(1)));
        let types: Vec<&Value> = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["type"])
            .collect();
        assert!(!types.contains(&&json!(REPLICA_FAILURE)), "{types:?}");
    }

    #[test]
    fn pausing_and_resuming_reset_the_condition() {
        let counts = Counts {
            replicas: 2,
            updated: 0,
            ready: 2,
            available: 2,
        };
        let status = super::status(&deployment(true, json!({})), counts, &pass(at(0)));
        assert_eq!(progressing(&status), ("Unknown".into(), PAUSED.into()));
        // Long paused: no timeout.
        let status = super::status(&deployment(true, status), counts, &pass(at(100)));
        assert_eq!(progressing(&status).1, PAUSED);
        let status = super::status(&deployment(false, status), counts, &pass(at(101)));
        assert_eq!(
            progressing(&status),
            ("Unknown".into(), "DeploymentResumed".into())
        );
    }
}
