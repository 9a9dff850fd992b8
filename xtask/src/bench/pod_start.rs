//! Pod start latency: create → Ready for pods started one after another
//! on a one-node cluster, its agent running pods (`--run-pods`). A pod is
//! written to etcd bound to the node, as the scheduler leaves it, and is
//! Ready when its stored status says so (polled with `etcdctl`, whose
//! round trip bounds the resolution). Its one container, `sleep` from the
//! cached `skiff/busybox` image, has no probe: it is Ready once started.
//!
//! The baseline is the process runner the container runtime replaces: a
//! host process started in a netns wired to the node's bridge and in a
//! cgroup of its own, as the old runner did, Ready once started; it has no
//! etcd round trips.
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use skiff_tests::{ProcessGuard, Testbed, bound_pod};

use super::results::{Latency, Measured, PodStart};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub fn measure(pods: usize) -> PodStart {
    PodStart {
        pods,
        runner: measured(agent(pods)),
        baseline: measured(process_runner(pods)),
    }
}

pub(super) fn measured(result: Result<Vec<f64>>) -> Measured {
    match result {
        Ok(samples) => Measured {
            latency: Latency::of(samples),
            error: None,
        },
        Err(error) => Measured {
            latency: None,
            error: Some(format!("{error:#}")),
        },
    }
}

fn pod(name: &str) -> Value {
    let container =
        json!({ "name": "main", "image": "skiff/busybox", "command": ["sleep", "3600"] });
    bound_pod(name, json!({ "containers": [container] }))
}

fn ready(pod: &Value) -> bool {
    (pod["status"]["conditions"].as_array().into_iter().flatten())
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Milliseconds from each pod's write to its Ready status.
fn agent(pods: usize) -> Result<Vec<f64>> {
    let mut testbed = Testbed::start_running_pods(1).context("starting the cluster")?;
    testbed
        .start_control(&[])
        .context("starting skiff-control")?;
    let store = testbed.store();
    let mut samples = Vec::new();
    for index in 0..pods {
        let name = format!("start-{index}");
        let key = format!("/registry/pods/default/{name}");
        let created = Instant::now();
        store.put(&key, &pod(&name))?;
        loop {
            if store.get(&key)?.is_some_and(|pod| ready(&pod)) {
                break;
            }
            if created.elapsed() > READY_TIMEOUT {
                bail!("pod {name} was not Ready within {READY_TIMEOUT:?}");
            }
        }
        samples.push(created.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(samples)
}

/// Milliseconds from creating each netns and cgroup to its process running.
fn process_runner(pods: usize) -> Result<Vec<f64>> {
    let mut testbed = Testbed::start(1).context("starting the cluster")?;
    let mut processes = Vec::new();
    let mut samples = Vec::new();
    for index in 0..pods {
        let created = Instant::now();
        let pod = testbed.add_pod(1, &format!("start-{index}"))?;
        processes.push(ProcessGuard::spawn(pod.command("sleep").arg("3600"))?);
        samples.push(created.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(samples)
}
