//! The Job controller, after kube-controller-manager's: runs pods from the
//! template until `completions` succeed (or, without completions, until
//! one does and none runs), at most `parallelism` at a time; replaces
//! failed pods after an exponential backoff until `backoffLimit`; fails a
//! job past `activeDeadlineSeconds` or on a FailJob rule of its pod failure
//! policy; deletes its pods while suspended; in Indexed mode gives each
//! pod an index (annotation, `JOB_COMPLETION_INDEX`, hostname
//! `<job>-<index>`). A finishing job first gets `FailureTarget` or
//! `SuccessCriteriaMet`, and `Failed` or `Complete` once its pods are gone
//! and counted. `ttlSecondsAfterFinished` deletes a finished job (its pods
//! follow through the garbage collector).

mod backoff;
mod indexes;
mod policy;
mod tracking;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};
use tracing::info;

use super::client::written;
use super::kind::Kind;
use super::protection::release;
use super::replicaset::victims;
use super::{Context, Controller, ControllerError, events, meta};
use tracking::{TRACKING_FINALIZER, Tally};

const COMPONENT: &str = "job-controller";

#[derive(Default)]
pub struct Jobs {
    /// Failures since the last success, by job uid.
    backoff: HashMap<String, backoff::Record>,
    /// When the earliest time-based decision of the last pass falls due.
    wake: Option<Instant>,
}

impl Controller for Jobs {
    const NAME: &'static str = "job";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        self.wake = None;
        let mut written = Vec::new();
        let jobs = context.cache.list(Kind::Job);
        let pods = context.cache.list(Kind::Pod);
        let live: BTreeSet<&str> = jobs
            .iter()
            .filter(|job| !meta::is_terminating(job))
            .map(meta::uid)
            .collect();
        // Pods of jobs that are gone or going are no longer counted.
        for pod in pods.iter().filter(|pod| tracking::tracked(pod)) {
            let owner = meta::controller_of(pod).and_then(|owner| owner["uid"].as_str());
            if owner.is_none_or(|uid| !live.contains(uid))
                && tracking::releasable(pod)
                && release(context, Kind::Pod, pod, TRACKING_FINALIZER).await?
            {
                written.push(Kind::Pod);
            }
        }
        self.backoff.retain(|uid, _| live.contains(uid.as_str()));
        for job in jobs.iter().filter(|job| !meta::is_terminating(job)) {
            let owned: Vec<Value> = pods
                .iter()
                .filter(|pod| {
                    meta::namespace(pod) == meta::namespace(job)
                        && meta::controlled_by(pod, meta::uid(job))
                })
                .cloned()
                .collect();
            self.sync(context, job, &owned, &mut written).await?;
        }
        Ok(written)
    }

    fn wake_in(&self) -> Option<Duration> {
        self.wake
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

/// How a job ends.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ending {
    failed: bool,
    reason: String,
    message: String,
}

impl Ending {
    fn failed(reason: &str, message: &str) -> Self {
        Self {
            failed: true,
            reason: reason.to_owned(),
            message: message.to_owned(),
        }
    }

    /// The condition set first, while pods may still be stopping.
    fn interim(&self) -> &'static str {
        if self.failed {
            "FailureTarget"
        } else {
            "SuccessCriteriaMet"
        }
    }

    fn last(&self) -> &'static str {
        if self.failed { "Failed" } else { "Complete" }
    }

    /// The ending a job's interim condition records.
    fn recorded(job: &Value) -> Option<Self> {
        job["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|condition| {
                condition["status"] == "True"
                    && matches!(
                        condition["type"].as_str(),
                        Some("FailureTarget" | "SuccessCriteriaMet")
                    )
            })
            .map(|condition| Self {
                failed: condition["type"] == "FailureTarget",
                reason: condition["reason"].as_str().unwrap_or_default().to_owned(),
                message: condition["message"].as_str().unwrap_or_default().to_owned(),
            })
    }
}

/// Whether the job has its final condition.
fn finished(job: &Value) -> bool {
    ["Complete", "Failed"]
        .iter()
        .any(|kind| meta::condition(job, kind) == Some("True"))
}

impl Jobs {
    fn wake_after(&mut self, delay: Duration) {
        let at = Instant::now() + delay;
        self.wake = Some(self.wake.map_or(at, |wake| wake.min(at)));
    }

    async fn sync(
        &mut self,
        context: &Context,
        job: &Value,
        pods: &[Value],
        written: &mut Vec<Kind>,
    ) -> Result<(), ControllerError> {
        let spec = &job["spec"];
        if finished(job) {
            for pod in pods.iter().filter(|pod| tracking::tracked(pod)) {
                if tracking::releasable(pod)
                    && release(context, Kind::Pod, pod, TRACKING_FINALIZER).await?
                {
                    written.push(Kind::Pod);
                }
            }
            return self.expire(context, job, written).await;
        }
        let completions = spec["completions"].as_u64();
        let indexed = spec["completionMode"] == "Indexed";
        let suspended = spec["suspend"].as_bool() == Some(true);
        let tally = tracking::tally(job, pods, completions);
        let now = Instant::now();
        let record = self.backoff.entry(meta::uid(job).to_owned()).or_default();
        if tally.new_success {
            record.succeeded();
        }
        if tally.new_failures > 0 {
            record.failed(tally.new_failures, now);
        }
        let backoff_left = record.remaining(now);
        let active: Vec<&Value> = pods.iter().filter(|pod| meta::pod_active(pod)).collect();
        let stopping = pods.iter().filter(|pod| tracking::stopping(pod)).count();

        let mut status = job["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        let timestamp = meta::now();
        let ending = Ending::recorded(job)
            .or_else(|| self.ending(job, &tally, &active, completions, indexed, suspended));
        if let Some(ending) = &ending {
            set_condition(
                &mut status,
                ending.interim(),
                "True",
                &ending.reason,
                &ending.message,
                &timestamp,
            );
            if active.is_empty() && stopping == 0 && tally.settled() {
                set_condition(
                    &mut status,
                    ending.last(),
                    "True",
                    &ending.reason,
                    &ending.message,
                    &timestamp,
                );
                if !ending.failed {
                    status["completionTime"] = timestamp.clone();
                }
            }
        } else if suspended {
            set_condition(
                &mut status,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                &timestamp,
            );
        } else {
            if meta::condition(job, "Suspended") == Some("True") {
                set_condition(
                    &mut status,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                    &timestamp,
                );
                status["startTime"] = timestamp.clone();
            }
            if status["startTime"].is_null() {
                status["startTime"] = timestamp.clone();
            }
        }
        status["active"] = json!(active.len());
        status["ready"] = json!(active.iter().filter(|pod| meta::pod_ready(pod)).count());
        status["terminating"] = json!(stopping);
        tally.write(&mut status, completions, indexed);
        if status != job["status"] {
            let mut updated = job.clone();
            updated["status"] = status.clone();
            if !written_ok(context.client.update_status(Kind::Job, &updated).await)? {
                return Ok(());
            }
            written.push(Kind::Job);
            if let Some(ending) = &ending
                && meta::condition(&updated, ending.last()) == Some("True")
            {
                announce(context, job, ending).await;
            }
        }
        // The uids are recorded: now the finalizers may go.
        for pod in &tally.release {
            if release(context, Kind::Pod, pod, TRACKING_FINALIZER).await? {
                written.push(Kind::Pod);
            }
        }
        if ending.is_some() || suspended {
            return delete_pods(context, job, &active, written).await;
        }
        if let Some(deadline) = deadline_in(job, &status) {
            self.wake_after(deadline);
        }
        if let Some(left) = backoff_left {
            self.wake_after(left);
        }
        let parallelism = spec["parallelism"].as_u64().unwrap_or(1);
        // With podReplacementPolicy Failed a stopping pod still holds its slot.
        let occupied = active.len() as u64
            + if spec["podReplacementPolicy"] == "Failed" {
                stopping as u64
            } else {
                0
            };
        if indexed {
            let completions = completions.unwrap_or(0);
            let (extra, wanted) = plan_indexes(
                &active,
                &tally.completed,
                completions,
                parallelism,
                occupied,
            );
            delete_pods(context, job, &extra, written).await?;
            if backoff_left.is_none() {
                for index in wanted {
                    create_pod(context, job, Some(index), written).await?;
                }
            }
            return Ok(());
        }
        let wanted = match completions {
            Some(completions) => {
                parallelism.min(completions.saturating_sub(tally.succeeded_total()))
            }
            // A work queue: once one pod succeeded, no new ones start.
            None if tally.succeeded_total() > 0 => 0,
            None => parallelism,
        };
        if occupied > wanted {
            let extra = victims(active.clone(), (occupied - wanted) as usize);
            delete_pods(context, job, &extra, written).await?;
        } else if backoff_left.is_none() {
            for _ in occupied..wanted {
                create_pod(context, job, None, written).await?;
            }
        }
        Ok(())
    }

    /// Whether the job ends now, and how.
    fn ending(
        &mut self,
        job: &Value,
        tally: &Tally,
        active: &[&Value],
        completions: Option<u64>,
        indexed: bool,
        suspended: bool,
    ) -> Option<Ending> {
        if let Some(message) = &tally.fail_job {
            return Some(Ending::failed("PodFailurePolicy", message));
        }
        if past_backoff_limit(job, tally, active) {
            return Some(Ending::failed(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ));
        }
        if !suspended && deadline_in(job, &job["status"]) == Some(Duration::ZERO) {
            return Some(Ending::failed(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ));
        }
        let complete = match completions {
            Some(completions) if indexed => tally.completed.len() as u64 >= completions,
            Some(completions) => tally.succeeded_total() >= completions,
            None => tally.succeeded_total() > 0 && active.is_empty(),
        };
        complete.then(|| Ending {
            failed: false,
            reason: "CompletionsReached".to_owned(),
            message: "Reached expected number of succeeded pods".to_owned(),
        })
    }

    /// `ttlSecondsAfterFinished`: deletes the job once it has passed.
    async fn expire(
        &mut self,
        context: &Context,
        job: &Value,
        written: &mut Vec<Kind>,
    ) -> Result<(), ControllerError> {
        let Some(ttl) = job["spec"]["ttlSecondsAfterFinished"].as_u64() else {
            return Ok(());
        };
        let Some(finished_at) = finish_time(job) else {
            return Ok(());
        };
        let age = meta::timestamp_now().duration_since(finished_at);
        let left = jiff::SignedDuration::from_secs(ttl as i64) - age;
        if left.is_positive() {
            self.wake_after(left.unsigned_abs());
            return Ok(());
        }
        info!(job = meta::name(job), "ttl after finish passed: deleting");
        context.client.delete(Kind::Job, job, None).await?;
        written.push(Kind::Job);
        Ok(())
    }
}

fn written_ok(result: Result<Value, super::ClientError>) -> Result<bool, ControllerError> {
    Ok(written(result)?)
}

/// When the job's final condition was set.
fn finish_time(job: &Value) -> Option<Timestamp> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| {
            condition["status"] == "True"
                && matches!(condition["type"].as_str(), Some("Complete" | "Failed"))
        })
        .and_then(|condition| meta::parse_time(&condition["lastTransitionTime"]))
}

/// Time left until `activeDeadlineSeconds` (zero once past); `None`
/// without a deadline or before the job started.
fn deadline_in(job: &Value, status: &Value) -> Option<Duration> {
    let deadline = job["spec"]["activeDeadlineSeconds"].as_i64()?;
    let started = meta::parse_time(&status["startTime"])?;
    let left =
        jiff::SignedDuration::from_secs(deadline) - meta::timestamp_now().duration_since(started);
    Some(if left.is_positive() {
        left.unsigned_abs()
    } else {
        Duration::ZERO
    })
}

/// More failures than `backoffLimit`; with restartPolicy OnFailure the
/// container restarts of running pods count too.
fn past_backoff_limit(job: &Value, tally: &Tally, active: &[&Value]) -> bool {
    let limit = job["spec"]["backoffLimit"].as_u64().unwrap_or(6);
    if tally.failed_total() > limit {
        return true;
    }
    if job["spec"]["template"]["spec"]["restartPolicy"] != "OnFailure" {
        return false;
    }
    let restarts: u64 = active
        .iter()
        .flat_map(|pod| {
            ["initContainerStatuses", "containerStatuses"]
                .iter()
                .flat_map(|list| pod["status"][*list].as_array().into_iter().flatten())
        })
        .filter_map(|status| status["restartCount"].as_u64())
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// Indexed mode: the active pods to delete (their index succeeded, is out
/// of range or taken twice) and the indexes to start, lowest first.
fn plan_indexes<'a>(
    active: &[&'a Value],
    completed: &BTreeSet<u64>,
    completions: u64,
    parallelism: u64,
    occupied: u64,
) -> (Vec<&'a Value>, Vec<u64>) {
    let mut running = BTreeSet::new();
    let mut extra = Vec::new();
    for pod in active {
        match indexes::of_pod(pod, completions) {
            Some(index) if !completed.contains(&index) && running.insert(index) => {}
            _ => extra.push(*pod),
        }
    }
    let free = parallelism.saturating_sub(occupied.saturating_sub(extra.len() as u64));
    let wanted = (0..completions)
        .filter(|index| !completed.contains(index) && !running.contains(index))
        .take(free as usize)
        .collect();
    (extra, wanted)
}

/// Sets the condition `kind`; its transition time changes only with its
/// status.
fn set_condition(
    status: &mut Value,
    kind: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: &Value,
) {
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let conditions = status["conditions"]
        .as_array_mut()
        .expect("conditions are a list");
    let fresh = json!({
        "type": kind, "status": value, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now,
    });
    match conditions
        .iter_mut()
        .find(|condition| condition["type"] == kind)
    {
        Some(condition) if condition["status"] == value => {
            condition["reason"] = json!(reason);
            condition["message"] = json!(message);
        }
        Some(condition) => *condition = fresh,
        None => conditions.push(fresh),
    }
}

/// A pod for the job from its template, tracked with the finalizer.
fn pod_for(job: &Value, index: Option<u64>) -> Value {
    let name = meta::name(job);
    let template = &job["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    let mut spec = template["spec"].clone();
    metadata["namespace"] = json!(meta::namespace(job));
    metadata["ownerReferences"] = json!([meta::controller_reference(job)]);
    let mut finalizers = metadata["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    finalizers.push(json!(TRACKING_FINALIZER));
    metadata["finalizers"] = json!(finalizers);
    match index {
        None => metadata["generateName"] = json!(format!("{name}-")),
        Some(index) => {
            metadata["generateName"] = json!(format!("{name}-{index}-"));
            for map in ["annotations", "labels"] {
                if !metadata[map].is_object() {
                    metadata[map] = json!({});
                }
                metadata[map][indexes::INDEX_ANNOTATION] = json!(index.to_string());
            }
            if spec["hostname"].is_null() {
                spec["hostname"] = json!(format!("{name}-{index}"));
            }
            let variable = json!({
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": { "fieldRef": {
                    "fieldPath": format!("metadata.annotations['{}']", indexes::INDEX_ANNOTATION),
                } },
            });
            for list in ["initContainers", "containers"] {
                for container in spec[list].as_array_mut().into_iter().flatten() {
                    if !container["env"].is_array() {
                        container["env"] = json!([]);
                    }
                    if let Some(env) = container["env"].as_array_mut() {
                        env.push(variable.clone());
                    }
                }
            }
        }
    }
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec })
}

async fn create_pod(
    context: &Context,
    job: &Value,
    index: Option<u64>,
    written: &mut Vec<Kind>,
) -> Result<(), ControllerError> {
    let created = match context
        .client
        .create(Kind::Pod, Some(meta::namespace(job)), &pod_for(job, index))
        .await
    {
        // Its namespace is going away: so will it.
        Err(error) if error.is_forbidden() => return Ok(()),
        other => other?,
    };
    written.push(Kind::Pod);
    info!(
        job = meta::name(job),
        pod = meta::name(&created),
        "created pod"
    );
    let message = format!("Created pod: {}", meta::name(&created));
    events::record(
        context,
        job,
        "Job",
        "Normal",
        "SuccessfulCreate",
        &message,
        COMPONENT,
    )
    .await;
    Ok(())
}

async fn delete_pods(
    context: &Context,
    job: &Value,
    pods: &[&Value],
    written: &mut Vec<Kind>,
) -> Result<(), ControllerError> {
    for pod in pods {
        context.client.delete(Kind::Pod, pod, None).await?;
        written.push(Kind::Pod);
        let message = format!("Deleted pod: {}", meta::name(pod));
        events::record(
            context,
            job,
            "Job",
            "Normal",
            "SuccessfulDelete",
            &message,
            COMPONENT,
        )
        .await;
    }
    Ok(())
}

/// The event of a job's end.
async fn announce(context: &Context, job: &Value, ending: &Ending) {
    let (kind, reason, message) = if ending.failed {
        ("Warning", ending.reason.as_str(), ending.message.as_str())
    } else {
        ("Normal", "Completed", "Job completed")
    };
    info!(job = meta::name(job), reason, "job finished");
    events::record(context, job, "Job", kind, reason, message, COMPONENT).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(index: u64) -> Value {
        json!({ "metadata": { "annotations": { indexes::INDEX_ANNOTATION: index.to_string() } } })
    }

    #[test]
    fn indexes_start_lowest_first_up_to_parallelism() {
        let running = [pod(1)];
        let active: Vec<&Value> = running.iter().collect();
        let (extra, wanted) = plan_indexes(&active, &[0].into(), 5, 2, 1);
        assert!(extra.is_empty());
        assert_eq!(wanted, [2]);
    }

    #[test]
    fn duplicate_and_completed_indexes_are_deleted() {
        let running = [pod(0), pod(2), pod(2), pod(9)];
        let active: Vec<&Value> = running.iter().collect();
        let (extra, wanted) = plan_indexes(&active, &[0].into(), 3, 3, 4);
        assert_eq!(extra.len(), 3);
        assert_eq!(wanted, [1]);
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let job = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": { "name": "work", "namespace": "ns", "uid": "u" },
            "spec": { "template": { "spec": { "containers": [{ "name": "c" }] } } },
        });
        let pod = pod_for(&job, Some(1));
        assert_eq!(pod["metadata"]["generateName"], "work-1-");
        assert_eq!(
            pod["metadata"]["annotations"][indexes::INDEX_ANNOTATION],
            "1"
        );
        assert_eq!(pod["spec"]["hostname"], "work-1");
        assert_eq!(
            pod["spec"]["containers"][0]["env"][0]["name"],
            "JOB_COMPLETION_INDEX"
        );
        assert_eq!(pod["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "u");
    }

    #[test]
    fn restarts_count_against_the_limit_with_on_failure() {
        let job = json!({ "spec": { "backoffLimit": 2, "template": { "spec": { "restartPolicy": "OnFailure" } } } });
        let running = json!({ "status": { "containerStatuses": [{ "restartCount": 2 }] } });
        let tally = Tally::default();
        assert!(past_backoff_limit(&job, &tally, &[&running]));
        assert!(!past_backoff_limit(&job, &tally, &[]));
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let mut status = json!({});
        set_condition(
            &mut status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            &json!("t1"),
        );
        set_condition(
            &mut status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            &json!("t2"),
        );
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "t1");
        set_condition(
            &mut status,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            &json!("t3"),
        );
        assert_eq!(status["conditions"][0]["lastTransitionTime"], "t3");
        assert_eq!(status["conditions"].as_array().unwrap().len(), 1);
    }
}
