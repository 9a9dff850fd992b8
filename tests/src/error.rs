//! The harness's one error type.

use std::io;
use std::path::PathBuf;

/// Everything the harness can fail at. Messages name the exact command, file or
/// address involved, so a failed test says what to look at without a rerun.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// An external command (mostly `ip`) ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// An external command could not be started at all.
    #[error("cannot run `{command}`: {cause}")]
    Spawn { command: String, cause: io::Error },
    /// A file-system or socket operation failed.
    #[error("{what}: {cause}")]
    Io { what: String, cause: io::Error },
    #[error(
        "invalid prefix {0:?}: expected `skiff` or `skiff-` followed by 4 lowercase hex digits"
    )]
    InvalidPrefix(String),
    #[error("{0}")]
    NotFound(String),
    #[error("invalid cluster request: {0}")]
    InvalidSpec(String),
    /// The machine lacks something a cluster needs (cgroup v2, bpffs, root).
    #[error("this machine cannot host a cluster: {0}")]
    Environment(String),
    /// Another cluster (or something that is not skiff) owns the fixed addresses.
    #[error("{0}")]
    Conflict(String),
    /// A skiff namespace could reach beyond the machine: the cluster must not be used.
    #[error("network isolation violated: {0}")]
    NotIsolated(String),
    #[error("timed out after {timeout_ms} ms waiting for {what}")]
    Timeout { what: String, timeout_ms: u128 },
    /// etcd exited or never became healthy; `log_tail` is the end of its log.
    #[error("etcd ({log}) {reason}; log tail:\n{log_tail}")]
    Etcd {
        reason: String,
        log: PathBuf,
        log_tail: String,
    },
    #[error("skiff-echo printed a line that is not a call result: {line:?}: {cause}")]
    CallOutput {
        line: String,
        cause: serde_json::Error,
    },
    /// Teardown went on after each failure; these are all of them.
    #[error("teardown left things behind:\n  {}", .failures.join("\n  "))]
    Teardown { failures: Vec<String> },
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>, cause: io::Error) -> Self {
        HarnessError::Io {
            what: what.into(),
            cause,
        }
    }
}

/// Short alias used across the crate.
pub(crate) type Result<T, E = HarnessError> = std::result::Result<T, E>;
