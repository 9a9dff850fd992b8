//! Idle memory of the control plane. skiff-control's (and a fresh etcd's
//! beside it) comes from `skiff-control-bench`, which starts both on
//! loopback ports of its own and prints the idle figure as its first JSON
//! line (`"bench":"rss","phase":"idle"`); the bench reads that line and
//! stops it, skipping its later figures. The etcd of the bench's cluster,
//! holding the bench's Services, is read here.

use std::{
    env, fs,
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use skiff_tests::agent_binary;

use super::{results::ControlPlane, rig::rss_mb};
use crate::sh;

const HOOK: &str = "skiff-control-bench";
const MB_PER_MIB: f64 = 1.048_576;

pub fn measure(etcd_pid: u32) -> ControlPlane {
    let mut control_plane = ControlPlane {
        etcd_idle_rss_mb: rss_mb(etcd_pid).ok(),
        ..ControlPlane::default()
    };
    match idle_line() {
        Ok(idle) => {
            let mb = |field: &str| idle[field].as_f64().map(|mib| mib * MB_PER_MIB);
            control_plane.skiff_control_idle_rss_mb = mb("skiff_control_mib");
            control_plane.skiff_control_etcd_idle_rss_mb = mb("etcd_mib");
            if control_plane.skiff_control_idle_rss_mb.is_none() {
                control_plane.skiff_control_unavailable = Some(format!(
                    "{HOOK}'s idle line has no skiff_control_mib: {idle}"
                ));
            }
        }
        Err(error) => control_plane.skiff_control_unavailable = Some(format!("{error:#}")),
    }
    control_plane
}

/// Runs `skiff-control-bench --quick` until it prints its idle line.
fn idle_line() -> Result<Value> {
    let binary = agent_binary()?.with_file_name(HOOK);
    if !binary.is_file() {
        bail!("{} is not built", binary.display());
    }
    // Its own process group, with the etcd and skiff-control it starts,
    // so that all three can be killed together.
    let mut child = Command::new(&binary)
        .process_group(0)
        .arg("--quick")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let idle = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let value: Value = serde_json::from_str(&line).ok()?;
            (value["bench"] == "rss" && value["phase"] == "idle").then_some(value)
        });
    // Its later figures are not ours. Killed, it cannot stop its etcd and
    // skiff-control nor remove its directory (it does so only when it
    // ends by itself): kill its process group, then remove the directory
    // it names after its pid.
    let pid = child.id();
    let _ = sh::cmd("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let _ = fs::remove_dir_all(env::temp_dir().join(format!("{HOOK}-{pid}")));
    idle.with_context(|| format!("{HOOK} exited without an idle RSS line"))
}
