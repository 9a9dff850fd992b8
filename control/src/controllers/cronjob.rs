//! The CronJob controller, after kube-controller-manager's: at each
//! scheduled time (in `spec.timeZone`) it creates the Job
//! `<cronjob>-<minutes since the epoch>` from the template, owned by the
//! CronJob and annotated with the scheduled time; it honours suspend,
//! `startingDeadlineSeconds` (older missed times are skipped) and the
//! concurrency policy (Allow, Forbid, Replace); it keeps `status.active`,
//! `lastScheduleTime` and `lastSuccessfulTime`, and deletes the oldest
//! finished jobs beyond the history limits. Each pass asks to run again at
//! the next scheduled time.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use tracing::{debug, info};

use super::client;
use super::kind::Kind;
use super::{Context, Controller, ControllerError, events, meta};
use crate::kinds::Schedule;

const COMPONENT: &str = "cronjob-controller";
pub const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Beyond this many missed start times upstream warns of clock skew.
const MAX_MISSED: u32 = 100;

#[derive(Default)]
pub struct CronJobs {
    /// The next scheduled time of any cronjob, as of the last pass.
    wake: Option<Instant>,
}

impl Controller for CronJobs {
    const NAME: &'static str = "cronjob";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        self.wake = None;
        let mut written = Vec::new();
        for cron_job in context.cache.list(Kind::CronJob) {
            if meta::is_terminating(&cron_job) {
                continue;
            }
            let jobs: Vec<Value> = context
                .cache
                .list_in(Kind::Job, meta::namespace(&cron_job))
                .into_iter()
                .filter(|job| meta::controlled_by(job, meta::uid(&cron_job)))
                .collect();
            self.sync(context, &cron_job, &jobs, &mut written).await?;
        }
        Ok(written)
    }

    fn wake_in(&self) -> Option<Duration> {
        self.wake
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
}

/// The start time due now, if any, and how many were missed on the way.
#[derive(Debug, PartialEq, Eq)]
struct Due {
    time: Option<Timestamp>,
    missed: u32,
}

/// The most recent scheduled time in (`earliest`, `now`]: what upstream's
/// `mostRecentScheduleTime` finds, counting the missed ones up to
/// [`MAX_MISSED`] + 1.
fn due(schedule: &Schedule, earliest: Timestamp, now: Timestamp) -> Due {
    let mut found = Due {
        time: None,
        missed: 0,
    };
    let mut cursor = earliest;
    while let Some(next) = schedule.next_after(cursor).filter(|&next| next <= now) {
        found.time = Some(next);
        found.missed += 1;
        if found.missed > MAX_MISSED {
            found.time = schedule.latest_until(now);
            break;
        }
        cursor = next;
    }
    found
}

/// Where the search for missed times starts: the last scheduled time (or
/// the creation), but no earlier than `startingDeadlineSeconds` ago.
fn earliest(cron_job: &Value, now: Timestamp) -> Timestamp {
    let last = meta::parse_time(&cron_job["status"]["lastScheduleTime"])
        .or_else(|| meta::parse_time(&cron_job["metadata"]["creationTimestamp"]))
        .unwrap_or(now);
    match cron_job["spec"]["startingDeadlineSeconds"].as_i64() {
        Some(deadline) => last.max(now - SignedDuration::from_secs(deadline)),
        None => last,
    }
}

/// Complete or Failed.
fn finished(job: &Value) -> Option<&'static str> {
    ["Complete", "Failed"]
        .into_iter()
        .find(|kind| meta::condition(job, kind) == Some("True"))
}

fn time_value(at: Timestamp) -> Value {
    serde_json::to_value(Time(at)).expect("a time serializes")
}

/// An ObjectReference to `job`, as `status.active` lists them.
fn reference(job: &Value) -> Value {
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job["metadata"]["name"],
        "namespace": job["metadata"]["namespace"],
        "uid": job["metadata"]["uid"],
        "resourceVersion": job["metadata"]["resourceVersion"],
    })
}

/// The finished jobs of `kind` beyond `limit`, oldest first.
fn beyond_limit<'a>(jobs: &'a [Value], kind: &str, limit: Option<u64>) -> Vec<&'a Value> {
    let mut done: Vec<&Value> = jobs
        .iter()
        .filter(|job| finished(job) == Some(kind))
        .collect();
    done.sort_by_key(|job| {
        Reverse((
            job["status"]["startTime"]
                .as_str()
                .or(job["metadata"]["creationTimestamp"].as_str())
                .unwrap_or_default()
                .to_owned(),
            meta::name(job).to_owned(),
        ))
    });
    let keep = limit.map_or(usize::MAX, |limit| limit as usize);
    done.into_iter().skip(keep).collect()
}

impl CronJobs {
    fn wake_at(&mut self, at: Timestamp) {
        let delay = at.duration_since(meta::timestamp_now());
        let at = Instant::now() + delay.unsigned_abs().min(Duration::from_secs(24 * 3600));
        self.wake = Some(self.wake.map_or(at, |wake| wake.min(at)));
    }

    async fn sync(
        &mut self,
        context: &Context,
        cron_job: &Value,
        jobs: &[Value],
        written: &mut Vec<Kind>,
    ) -> Result<(), ControllerError> {
        let spec = &cron_job["spec"];
        let schedule = match Schedule::new(
            spec["schedule"].as_str().unwrap_or_default(),
            spec["timeZone"].as_str(),
        ) {
            Ok(schedule) => schedule,
            Err(message) => {
                let message = format!("unparseable schedule: {message}");
                events::record(
                    context,
                    cron_job,
                    "CronJob",
                    "Warning",
                    "UnparseableSchedule",
                    &message,
                    COMPONENT,
                )
                .await;
                return Ok(());
            }
        };
        let now = meta::timestamp_now();
        let mut status = cron_job["status"].clone();
        if !status.is_object() {
            status = json!({});
        }
        let mut active: Vec<&Value> = jobs.iter().filter(|job| finished(job).is_none()).collect();
        let last_success = jobs
            .iter()
            .filter(|job| finished(job) == Some("Complete"))
            .filter_map(|job| meta::parse_time(&job["status"]["completionTime"]))
            .chain(meta::parse_time(&status["lastSuccessfulTime"]))
            .max();
        if let Some(last_success) = last_success {
            status["lastSuccessfulTime"] = time_value(last_success);
        }
        for (kind, limit) in [
            ("Complete", "successfulJobsHistoryLimit"),
            ("Failed", "failedJobsHistoryLimit"),
        ] {
            for job in beyond_limit(jobs, kind, spec[limit].as_u64()) {
                delete_job(context, cron_job, job, written).await?;
            }
        }
        if let Some(next) = schedule.next_after(now) {
            self.wake_at(next);
        }
        let mut created = None;
        if spec["suspend"].as_bool() != Some(true) {
            let due = due(&schedule, earliest(cron_job, now), now);
            if due.missed > MAX_MISSED {
                let message = format!(
                    "too many missed start times: {}. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                    due.missed
                );
                events::record(
                    context,
                    cron_job,
                    "CronJob",
                    "Warning",
                    "TooManyMissedTimes",
                    &message,
                    COMPONENT,
                )
                .await;
            }
            if let Some(scheduled) = due.time {
                let name = format!("{}-{}", meta::name(cron_job), scheduled.as_second() / 60);
                let exists = jobs.iter().any(|job| meta::name(job) == name);
                let forbidden = spec["concurrencyPolicy"] == "Forbid" && !active.is_empty();
                if forbidden && !exists {
                    // Asked again each pass until the next time replaces it.
                    debug!(
                        cronjob = meta::name(cron_job),
                        "prior job still running and concurrency policy is Forbid: not starting"
                    );
                } else if !exists {
                    if spec["concurrencyPolicy"] == "Replace" {
                        for job in active.drain(..) {
                            delete_job(context, cron_job, job, written).await?;
                        }
                    }
                    created = create_job(context, cron_job, &schedule, scheduled, &name).await?;
                    if created.is_some() {
                        written.push(Kind::Job);
                    }
                    status["lastScheduleTime"] = time_value(scheduled);
                } else if meta::parse_time(&status["lastScheduleTime"])
                    .is_none_or(|last| last < scheduled)
                {
                    status["lastScheduleTime"] = time_value(scheduled);
                }
            }
        }
        let mut references: Vec<Value> = active.iter().map(|job| reference(job)).collect();
        references.extend(created.as_ref().map(reference));
        if references.is_empty() {
            status.as_object_mut().map(|status| status.remove("active"));
        } else {
            status["active"] = json!(references);
        }
        if status != cron_job["status"] {
            let mut updated = cron_job.clone();
            updated["status"] = status;
            if client::written(context.client.update_status(Kind::CronJob, &updated).await)? {
                written.push(Kind::CronJob);
            }
        }
        Ok(())
    }
}

/// Creates the job for `scheduled`; `None` when it exists already.
async fn create_job(
    context: &Context,
    cron_job: &Value,
    schedule: &Schedule,
    scheduled: Timestamp,
    name: &str,
) -> Result<Option<Value>, ControllerError> {
    let template = &cron_job["spec"]["jobTemplate"];
    let mut annotations = template["metadata"]["annotations"].clone();
    if !annotations.is_object() {
        annotations = json!({});
    }
    annotations[SCHEDULED_ANNOTATION] = json!(schedule.format(scheduled));
    let job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta::namespace(cron_job),
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [meta::controller_reference(cron_job)],
        },
        "spec": template["spec"],
    });
    let created = match context
        .client
        .create(Kind::Job, Some(meta::namespace(cron_job)), &job)
        .await
    {
        Err(error) if error.is_conflict() => return Ok(None),
        Err(error) if error.is_forbidden() => return Ok(None),
        other => other?,
    };
    info!(cronjob = meta::name(cron_job), job = name, "created job");
    let message = format!("Created job {name}");
    events::record(
        context,
        cron_job,
        "CronJob",
        "Normal",
        "SuccessfulCreate",
        &message,
        COMPONENT,
    )
    .await;
    Ok(Some(created))
}

/// Deletes `job`; its pods follow through the garbage collector.
async fn delete_job(
    context: &Context,
    cron_job: &Value,
    job: &Value,
    written: &mut Vec<Kind>,
) -> Result<(), ControllerError> {
    context.client.delete(Kind::Job, job, None).await?;
    written.push(Kind::Job);
    let message = format!("Deleted job {}", meta::name(job));
    events::record(
        context,
        cron_job,
        "CronJob",
        "Normal",
        "SuccessfulDelete",
        &message,
        COMPONENT,
    )
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a timestamp")
    }

    #[test]
    fn the_most_recent_missed_time_is_due() {
        let every_five = Schedule::new("*/5 * * * *", None).unwrap();
        let found = due(
            &every_five,
            at("2024-01-01T10:00:00Z"),
            at("2024-01-01T10:12:00Z"),
        );
        assert_eq!(
            found,
            Due {
                time: Some(at("2024-01-01T10:10:00Z")),
                missed: 2
            }
        );
        let none = due(
            &every_five,
            at("2024-01-01T10:10:00Z"),
            at("2024-01-01T10:14:59Z"),
        );
        assert_eq!(none.time, None);
    }

    #[test]
    fn too_many_missed_times_still_start_the_latest() {
        let every_minute = Schedule::new("* * * * *", None).unwrap();
        let found = due(
            &every_minute,
            at("2024-01-01T00:00:00Z"),
            at("2024-01-02T00:00:30Z"),
        );
        assert!(found.missed > MAX_MISSED);
        assert_eq!(found.time, Some(at("2024-01-02T00:00:00Z")));
    }

    #[test]
    fn the_starting_deadline_bounds_the_search() {
        let now = at("2024-01-01T12:00:30Z");
        let cron_job = json!({
            "metadata": { "creationTimestamp": "2024-01-01T00:00:00Z" },
            "spec": { "startingDeadlineSeconds": 60 },
            "status": {},
        });
        assert_eq!(earliest(&cron_job, now), at("2024-01-01T11:59:30Z"));
        let hourly = Schedule::new("@hourly", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            due(&hourly, earliest(&cron_job, now), now).time,
            Some(at("2024-01-01T12:00:00Z"))
        );
        let later = at("2024-01-01T12:02:00Z");
        assert_eq!(due(&hourly, earliest(&cron_job, later), later).time, None);
    }

    #[test]
    fn history_keeps_the_newest_finished_jobs() {
        let job = |name: &str, kind: &str, start: &str| {
            json!({
                "metadata": { "name": name },
                "status": { "startTime": start, "conditions": [{ "type": kind, "status": "True" }] },
            })
        };
        let jobs = [
            job("a", "Complete", "2024-01-01T00:01:00Z"),
            job("b", "Complete", "2024-01-01T00:02:00Z"),
            job("c", "Failed", "2024-01-01T00:03:00Z"),
            job("d", "Complete", "2024-01-01T00:04:00Z"),
        ];
        let names: Vec<&str> = beyond_limit(&jobs, "Complete", Some(2))
            .into_iter()
            .map(meta::name)
            .collect();
        assert_eq!(names, ["a"]);
        assert!(beyond_limit(&jobs, "Failed", Some(1)).is_empty());
        assert_eq!(beyond_limit(&jobs, "Failed", Some(0)).len(), 1);
    }
}
