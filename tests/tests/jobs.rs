//! Jobs and CronJobs end to end, with the real `kubectl` and two agents
//! running pods: an Indexed job whose index 1 fails once is retried after
//! the backoff and completes (`kubectl wait --for=condition=complete`); a
//! job that always fails stops at its backoffLimit; a CronJob fires within
//! its minute; bad input is refused with a 422 naming the field.
//!
//!
//! Runs as root; clusters are serialised by the harness's lock. Bringing a
//! cluster up takes much of the time, so one cluster runs every step, and
//! the CronJob waits for its minute while the Jobs run.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::Testbed;

const TIMEOUT: Duration = Duration::from_secs(90);

fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    skiff_tests::eventually(what, TIMEOUT, check)
}

/// The condition `kind` of an object, if True.
fn true_condition(object: &Value, kind: &str) -> Option<Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == kind && condition["status"] == "True")
        .cloned()
}

/// The second of the day of an RFC 3339 time `...THH:MM:SSZ`.
fn second_of_day(time: &str) -> u64 {
    let clock = &time[time.len() - 9..time.len() - 1];
    clock
        .split(':')
        .map(|part| part.parse::<u64>().unwrap())
        .fold(0, |seconds, part| seconds * 60 + part)
}

/// A host directory the pods share (both agents run on this machine),
/// removed afterwards.
struct Marker(PathBuf);

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Index 1 fails on its first attempt (it leaves a marker), then succeeds.
fn indexed_job(marker: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: indexed
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: skiff/busybox
        imagePullPolicy: Never
        command: ["sh", "-c", "if [ \"$JOB_COMPLETION_INDEX\" = 1 ] && [ ! -e /marker/tried ]; then touch /marker/tried; exit 3; fi; echo index $JOB_COMPLETION_INDEX on $(hostname)"]
        volumeMounts:
        - name: marker
          mountPath: /marker
      volumes:
      - name: marker
        hostPath:
          path: {marker}
          type: Directory
"#
    )
}

const FAILING_JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: failing
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: skiff/busybox
        imagePullPolicy: Never
        command: ["sh", "-c", "exit 1"]
"#;

#[test]
fn one_cluster_runs_jobs_a_cronjob_and_refuses_bad_ones() {
    let mut testbed = Testbed::start_running_pods(2).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();
    bad_jobs_and_cronjobs_are_refused(&testbed);
    let cron_created = Instant::now();
    testbed.kubectl_ok(&["create", "-f", "-"], CRON_JOB);
    indexed_job_retries_a_failed_index_and_backoff_limit_fails_a_job(&testbed);
    cronjob_fires_within_its_minute(&testbed, cron_created);
}

/// An Indexed job whose index 1 fails once is retried and completes; a job
/// that always fails stops at its backoffLimit, after the backoff.
fn indexed_job_retries_a_failed_index_and_backoff_limit_fails_a_job(testbed: &Testbed) {
    let marker =
        Marker(std::env::temp_dir().join(format!("skiff-job-marker-{}", std::process::id())));
    std::fs::create_dir_all(&marker.0).unwrap();
    let started = Instant::now();

    testbed.kubectl_ok(
        &["create", "-f", "-"],
        &indexed_job(&marker.0.display().to_string()),
    );
    testbed.kubectl_ok(&["create", "-f", "-"], FAILING_JOB);
    testbed.kubectl_ok(
        &[
            "wait",
            "--for=condition=complete",
            "job/indexed",
            "--timeout=80s",
        ],
        "",
    );
    let job = testbed.kubectl_json(&["get", "job", "indexed"]);
    assert_eq!(job["status"]["completedIndexes"], "0-2", "{job:#}");
    assert_eq!(job["status"]["succeeded"], 3, "{job:#}");
    assert_eq!(job["status"]["failed"], 1, "{job:#}");
    assert!(job["status"]["completionTime"].is_string(), "{job:#}");
    let criteria = true_condition(&job, "SuccessCriteriaMet").expect("SuccessCriteriaMet first");
    assert_eq!(criteria["reason"], "CompletionsReached");
    // Each index ran as `<job>-<index>`; index 1 twice.
    let pods = testbed.kubectl_json(&["get", "pods", "-l", "batch.kubernetes.io/job-name=indexed"]);
    let pods = pods["items"].as_array().unwrap();
    let of_index = |index: &str| {
        pods.iter()
            .filter(|pod| {
                pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == index
            })
            .count()
    };
    assert_eq!((of_index("0"), of_index("1"), of_index("2")), (1, 2, 1));
    let retried = pods
        .iter()
        .find(|pod| {
            pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
                && pod["status"]["phase"] == "Succeeded"
        })
        .expect("index 1 succeeded");
    assert_eq!(retried["spec"]["hostname"], "indexed-1");
    let logs = testbed.kubectl_ok(&["logs", retried["metadata"]["name"].as_str().unwrap()], "");
    assert_eq!(logs, "index 1 on indexed-1\n");
    assert!(
        pods.iter().all(|pod| pod["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty)),
        "finished pods keep no tracking finalizer"
    );

    let failed = eventually("the failing job Failed", || {
        let job = testbed.kubectl_json(&["get", "job", "failing"]);
        true_condition(&job, "Failed").map(|condition| (job, condition))
    });
    let (job, condition) = failed;
    assert_eq!(condition["reason"], "BackoffLimitExceeded", "{job:#}");
    assert_eq!(job["status"]["failed"], 2, "{job:#}");
    assert!(true_condition(&job, "FailureTarget").is_some(), "{job:#}");
    assert!(job["status"]["completionTime"].is_null());
    // The replacement waited out the backoff (10 s after the first failure).
    let pods = testbed.kubectl_json(&["get", "pods", "-l", "job-name=failing"]);
    let mut created: Vec<u64> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pod| second_of_day(pod["metadata"]["creationTimestamp"].as_str().unwrap()))
        .collect();
    created.sort_unstable();
    assert_eq!(created.len(), 2, "{pods:#}");
    let gap = (created[1] + 86_400 - created[0]) % 86_400;
    assert!(gap >= 10, "the second pod came {gap} s after the first");
    eprintln!("jobs finished after {:?}", started.elapsed());
}

/// On an empty cluster: bad Jobs and CronJobs are refused with a 422
/// naming the field, and nothing is stored.
fn bad_jobs_and_cronjobs_are_refused(testbed: &Testbed) {
    let negative = FAILING_JOB
        .replace("name: failing", "name: negative")
        .replace("backoffLimit: 1", "completions: -1");
    let err = testbed
        .run_kubectl(&["create", "-f", "-"], &negative)
        .expect_err("negative completions are refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("spec.completions: Invalid value: -1: must be greater than or equal to 0"),
        "{message}"
    );
    let bad_schedule = CRON_JOB.replace("*/1 * * * *", "every minute");
    let err = testbed
        .run_kubectl(&["create", "-f", "-"], &bad_schedule)
        .expect_err("a bad schedule is refused");
    let message = format!("{err:#}");
    assert!(
        message.contains(r#"spec.schedule: Invalid value: "every minute""#),
        "{message}"
    );
    let jobs = testbed.kubectl_json(&["get", "jobs,cronjobs"]);
    assert_eq!(jobs["items"], serde_json::json!([]), "nothing stored");
}

const CRON_JOB: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: hello
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: hello
            image: skiff/busybox
            imagePullPolicy: Never
            command: ["sh", "-c", "echo hello from cron"]
"#;

/// The CronJob `hello`, created at `started`, runs a Job within its minute
/// (its latest, should a second minute have begun meanwhile), which
/// completes and is recorded in the CronJob's status.
fn cronjob_fires_within_its_minute(testbed: &Testbed, started: Instant) {
    let job = eventually("the cronjob's job", || {
        let jobs = testbed.kubectl_json(&["get", "jobs"]);
        jobs["items"]
            .as_array()?
            .iter()
            // Owned by the CronJob, as its controller makes them.
            .filter(|job| job["metadata"]["ownerReferences"][0]["kind"] == "CronJob")
            .max_by_key(|job| job["metadata"]["name"].as_str().map(str::to_owned))
            .cloned()
    });
    let name = job["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(
        name.strip_prefix("hello-")
            .is_some_and(|minutes| minutes.parse::<u64>().is_ok()),
        "{name}"
    );
    assert!(
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .as_str()
            .is_some_and(|stamp| stamp.ends_with(":00Z")),
        "{job:#}"
    );
    testbed.kubectl_ok(
        &[
            "wait",
            "--for=condition=complete",
            &format!("job/{name}"),
            "--timeout=60s",
        ],
        "",
    );
    eprintln!("the first job completed after {:?}", started.elapsed());
    let cron_job = testbed.kubectl_json(&["get", "cronjob", "hello"]);
    assert_eq!(
        cron_job["status"]["lastScheduleTime"],
        job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    );
    eventually("lastSuccessfulTime and no active job", || {
        let cron_job = testbed.kubectl_json(&["get", "cronjob", "hello"]);
        (cron_job["status"]["lastSuccessfulTime"].is_string()
            && cron_job["status"]["active"].is_null())
        .then_some(())
    });
    let pods = testbed.kubectl_json(&["get", "pods", "-l", &format!("job-name={name}")]);
    let pod = &pods["items"][0];
    assert_eq!(pod["status"]["phase"], "Succeeded");
    assert_eq!(
        testbed.kubectl_ok(&["logs", pod["metadata"]["name"].as_str().unwrap()], ""),
        "hello from cron\n"
    );
}
