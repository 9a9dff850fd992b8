//! Leader kill → controllers acting again: two skiff-controls on one
//! etcd (a one-node cluster) with a short lease. Each round kills the
//! member holding the lease (SIGKILL), creates a Deployment through the
//! survivor's API, and times from the kill to its ReplicaSet in etcd (the
//! standby's first controller action, polled with `etcdctl`, whose round
//! trip bounds the resolution). A fresh standby joins before the next
//! round. The figure is reported against the lease's duration: a standby
//! may take over only once the lease has gone unrenewed that long.
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use skiff_tests::{ProcessGuard, Testbed, kubectl};

use super::pod_start::measured;
use super::results::{LeaderFailover, Measured};

/// The lease and renewal period of the measured members.
pub const LEASE: Duration = Duration::from_secs(4);
const RETRY: Duration = Duration::from_millis(500);
/// Far beyond the target (lease + 2 s): a takeover that never comes.
const ACTING_TIMEOUT: Duration = Duration::from_secs(30);

pub fn measure(rounds: usize) -> LeaderFailover {
    LeaderFailover {
        lease_ms: LEASE.as_millis() as f64,
        rounds,
        takeover: measured(takeovers(rounds)),
    }
}

struct Member {
    process: ProcessGuard,
    kubeconfig: PathBuf,
}

fn start_member(testbed: &Testbed, name: &str) -> Result<Member> {
    let flags = [
        format!("--leader-elect-lease-duration={}ms", LEASE.as_millis()),
        format!("--leader-elect-retry-period={}ms", RETRY.as_millis()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (process, kubeconfig) = testbed
        .start_another_control(name, &flags)
        .with_context(|| format!("starting skiff-control {name}"))?;
    Ok(Member {
        process,
        kubeconfig,
    })
}

/// The pid in the lease's holder identity (`<hostname>_<pid>`).
fn leader_pid(testbed: &Testbed) -> Result<Option<u32>> {
    let lease = testbed
        .store()
        .get("/registry/leases/kube-system/skiff-control")?;
    Ok(lease
        .as_ref()
        .and_then(|lease| lease["spec"]["holderIdentity"].as_str())
        .and_then(|holder| holder.rsplit_once('_'))
        .and_then(|(_, pid)| pid.parse().ok()))
}

/// Milliseconds from each leader's SIGKILL to its successor's first
/// ReplicaSet.
fn takeovers(rounds: usize) -> Result<Vec<f64>> {
    let testbed = Testbed::start(1).context("starting the cluster")?;
    let mut members = vec![start_member(&testbed, "control-0")?];
    let mut samples = Vec::new();
    for round in 0..rounds {
        members.push(start_member(&testbed, &format!("control-{}", round + 1))?);
        let waiting = Instant::now();
        let leader = loop {
            let pid = leader_pid(&testbed)?;
            if let Some(index) = members.iter().position(|m| Some(m.process.pid()) == pid) {
                break index;
            }
            if waiting.elapsed() > ACTING_TIMEOUT {
                bail!("no member holds the lease");
            }
            std::thread::sleep(RETRY);
        };
        let survivor = members.remove(1 - leader);
        // SIGKILL: the guard kills its process when dropped.
        drop(members.pop());
        let killed = Instant::now();
        let name = format!("after-kill-{round}");
        let created = kubectl(&survivor.kubeconfig)?
            .args(["create", "deployment", &name, "--image=skiff/busybox"])
            .output()
            .context("running kubectl")?;
        if !created.status.success() {
            bail!(
                "kubectl create deployment: {}",
                String::from_utf8_lossy(&created.stderr)
            );
        }
        loop {
            let sets = testbed.store().list("/registry/replicasets/default/")?;
            if sets.iter().any(|set| {
                set["metadata"]["ownerReferences"][0]["name"].as_str() == Some(name.as_str())
            }) {
                break;
            }
            if killed.elapsed() > ACTING_TIMEOUT {
                bail!("no controller acted within {ACTING_TIMEOUT:?} of the kill");
            }
        }
        samples.push(killed.elapsed().as_secs_f64() * 1000.0);
        members.push(survivor);
    }
    Ok(samples)
}

/// Whether every takeover came within the lease plus 2 s.
pub fn within_target(takeover: &Measured) -> Option<bool> {
    let target = (LEASE + Duration::from_secs(2)).as_millis() as f64;
    let latency = takeover.latency.as_ref()?;
    Some(latency.samples_ms.iter().all(|ms| *ms <= target))
}
