//! Running `skiff-control` (the API server with its scheduler and
//! controllers) beside a cluster's etcd, and `kubectl` against it.
use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{
    binaries::{control_binary, kubectl_binary},
    error::{HarnessError, Result},
};

/// The kubeconfig skiff-control writes in its data directory.
pub fn kubeconfig_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.kubeconfig")
}

/// The cluster CA skiff-control keeps in `data_dir` (made at its first
/// start): agents serve the kubelet API to the client certificate it signed.
pub fn cluster_ca_path(data_dir: &Path) -> PathBuf {
    data_dir.join("pki").join("ca.crt")
}

/// A free port on 127.0.0.1 for skiff-control to serve kubectl on, in the
/// root netns.
pub fn free_local_bind() -> Result<SocketAddr> {
    free_bind(Ipv4Addr::LOCALHOST)
}

/// A free port on `ip` (an address of the root netns), as for the agents'
/// way to skiff-control on the control-plane address.
pub fn free_bind(ip: Ipv4Addr) -> Result<SocketAddr> {
    let listener = TcpListener::bind((ip, 0))
        .map_err(|e| HarnessError::io(format!("cannot bind {ip}:0 to find a free port"), e))?;
    listener
        .local_addr()
        .map_err(|e| HarnessError::io("cannot read a bound port", e))
}

/// `skiff-control` serving on `bind`, storing in `etcd`, its PKI and
/// kubeconfig in `data_dir`, plus `extra` flags.
pub fn control_command(
    bind: SocketAddr,
    etcd_endpoints: &[String],
    data_dir: &Path,
    extra: &[&str],
) -> Result<Command> {
    let mut command = Command::new(control_binary()?);
    command
        .arg(format!("--bind={bind}"))
        .arg(format!("--etcd={}", etcd_endpoints.join(",")))
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    Ok(command)
}

/// `kubectl --kubeconfig <kubeconfig>`.
pub fn kubectl(kubeconfig: &Path) -> Result<Command> {
    let mut command = Command::new(kubectl_binary()?);
    command.arg("--kubeconfig").arg(kubeconfig);
    Ok(command)
}

/// Waits until the API server behind `kubeconfig` answers kubectl, failing
/// at once if `running` says it exited.
pub fn wait_for_api(
    kubeconfig: &Path,
    mut running: impl FnMut() -> bool,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if !running() {
            return Err(HarnessError::Environment(
                "skiff-control exited before it served".into(),
            ));
        }
        if kubeconfig.exists() {
            let answered = kubectl(kubeconfig)?
                .args(["get", "--raw", "/api"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(HarnessError::Timeout {
                what: format!("skiff-control to serve ({})", kubeconfig.display()),
                timeout_ms: timeout.as_millis(),
            });
        }
        thread::sleep(Duration::from_millis(100));
    }
}
