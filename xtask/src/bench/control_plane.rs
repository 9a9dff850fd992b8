//! Idle memory of the control plane: etcd's is read here; skiff-control's
//! comes from `skiff-control-bench`, which another part of issue #6
//! provides. The hook: when a `skiff-control-bench` binary sits next to
//! `skiff-agent`, the bench runs `skiff-control-bench --etcd <endpoint>` and
//! reads `{"idle_rss_bytes": <n>}` from the last line of its stdout.

use std::process::Command;

use anyhow::{Context, Result, bail};
use skiff_tests::agent_binary;

use super::{results::ControlPlane, rig::rss_mb};

const HOOK: &str = "skiff-control-bench";

pub fn measure(etcd_pid: u32, etcd_endpoint: &str) -> ControlPlane {
    let mut control_plane = ControlPlane {
        etcd_idle_rss_mb: rss_mb(etcd_pid).ok(),
        ..ControlPlane::default()
    };
    match skiff_control_rss(etcd_endpoint) {
        Ok(Some(mb)) => control_plane.skiff_control_idle_rss_mb = Some(mb),
        Ok(None) => {
            control_plane.skiff_control_unavailable = Some(format!(
                "no {HOOK} binary yet (provided separately for issue #6)"
            ));
        }
        Err(error) => control_plane.skiff_control_unavailable = Some(format!("{error:#}")),
    }
    control_plane
}

fn skiff_control_rss(etcd_endpoint: &str) -> Result<Option<f64>> {
    let binary = agent_binary()?.with_file_name(HOOK);
    if !binary.is_file() {
        return Ok(None);
    }
    let output = Command::new(&binary)
        .args(["--etcd", etcd_endpoint])
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !output.status.success() {
        bail!("{HOOK} failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .with_context(|| format!("reading {HOOK}'s report"))?;
    report["idle_rss_bytes"]
        .as_f64()
        .map(|bytes| Some(bytes / 1e6))
        .with_context(|| format!("{HOOK} reported no idle_rss_bytes"))
}
