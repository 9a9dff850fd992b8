//! Waiting for the local cluster's pods after `up`, with a line per pod
//! state change so a slow start shows where it is.

use std::{
    collections::BTreeMap,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cluster_files::LOG_DIR;

const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// One pod's state as the progress display shows it.
/// A Ready pod whose container started before `started_since` (a pod the
/// API still shows as it was before a rebuild) counts as `Restarting`.
fn pod_state(pod: &Value, started_since: Option<&str>) -> String {
    let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
    let waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str();
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"].as_str();
    let stale = started_since.is_some_and(|since| started.is_none_or(|at| at < since));
    let state = match (ready, waiting) {
        (true, _) if stale => "Restarting".to_owned(),
        (true, _) => "Ready".to_owned(),
        (false, Some(reason)) => reason.to_owned(),
        (false, None) => phase.to_owned(),
    };
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("unscheduled");
    let ip = pod["status"]["podIP"].as_str().unwrap_or("-");
    format!("{state} on {node} ({ip})")
}

/// Polls the default namespace, printing a line per pod state change,
/// until every Deployment has all its replicas ready and every pod is (and,
/// given `started_since`, has started since then).
pub fn wait_until_ready(
    kubectl: &dyn Fn(&[&str]) -> Result<String>,
    started_since: Option<&str>,
) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let pods: Value = serde_json::from_str(&kubectl(&["get", "pods", "-o", "json"])?)
            .context("parsing pods")?;
        let deployments: Value =
            serde_json::from_str(&kubectl(&["get", "deployments", "-o", "json"])?)
                .context("parsing deployments")?;
        let pods = pods["items"].as_array().cloned().unwrap_or_default();
        for pod in &pods {
            let name = pod["metadata"]["name"].as_str().unwrap_or("?").to_owned();
            let state = pod_state(pod, started_since);
            if seen.get(&name) != Some(&state) {
                println!("up: pod {name}: {state}");
                seen.insert(name, state);
            }
        }
        let deployments_ready = deployments["items"].as_array().is_some_and(|items| {
            items
                .iter()
                .all(|d| d["status"]["readyReplicas"] == d["spec"]["replicas"])
        });
        let pods_ready = !pods.is_empty()
            && pods.iter().all(|p| {
                pod_state(p, started_since).starts_with("Ready")
                    && p["metadata"]["deletionTimestamp"].is_null()
            });
        if deployments_ready && pods_ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not everything was Ready within {READY_TIMEOUT:?}; see the logs in {LOG_DIR}");
        }
        thread::sleep(Duration::from_millis(250));
    }
}
