//! A container's termination message, as the kubelet reads it: the file
//! at `terminationMessagePath` (default `/dev/termination-log`), which the
//! container sees as a bind mount of a host file of its own kept beside its
//! log, read when it exits into `state.terminated.message`. With
//! `terminationMessagePolicy: FallbackToLogsOnError`, a failed container
//! that wrote nothing there gets the end of its log instead.
use std::{fs, io, path::PathBuf};

use k8s_openapi::api::core::v1::Container;

use super::{logs, runtime::PodRuntime};

/// Where a container finds the file unless `terminationMessagePath` says.
pub const DEFAULT_PATH: &str = "/dev/termination-log";
/// The kubelet's limit on a message read from the file.
const MAX_FILE_BYTES: usize = 4096;
/// The kubelet's limits on a message taken from the log.
const FALLBACK_LINES: usize = 80;
const MAX_FALLBACK_BYTES: usize = 2048;

/// The host file behind the container's termination message path.
pub fn host_path(runtime: &PodRuntime, container: &str) -> PathBuf {
    let pod = &runtime.key;
    (runtime.ctx.logs.pod_dir(&pod.namespace, &pod.name))
        .join(format!("{container}.termination-log"))
}

/// An empty host file for the instance about to start (a restarted
/// container does not inherit its predecessor's message).
pub fn prepare(runtime: &PodRuntime, container: &str) -> io::Result<PathBuf> {
    let path = host_path(runtime, container);
    fs::write(&path, b"")?;
    Ok(path)
}

/// The message of the instance that just exited with `exit_code`: the
/// file's, else `reason` (why the agent killed it), else for
/// FallbackToLogsOnError and a failure the end of its log.
pub fn message(
    runtime: &PodRuntime,
    container: &Container,
    exit_code: i32,
    reason: Option<String>,
) -> Option<String> {
    let written = fs::read(host_path(runtime, &container.name)).unwrap_or_default();
    if let Some(text) = non_empty(&written[..written.len().min(MAX_FILE_BYTES)]) {
        return Some(text);
    }
    if reason.is_some() {
        return reason;
    }
    let fallback = container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if !fallback || exit_code == 0 {
        return None;
    }
    let pod = &runtime.key;
    let log = fs::read(
        runtime
            .ctx
            .logs
            .path(&pod.namespace, &pod.name, &container.name, false),
    )
    .unwrap_or_default();
    let tail = logs::tail(&log, Some(FALLBACK_LINES));
    non_empty(&tail[tail.len().saturating_sub(MAX_FALLBACK_BYTES)..])
}

fn non_empty(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    (!text.trim().is_empty()).then(|| text.into_owned())
}
