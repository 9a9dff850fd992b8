//! The JSON lines `skiff-echo call` prints, shared by the binary (which
//! writes them) and tests (which read them).

use std::io;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::binaries::echo_binary;
use crate::cmd;
use crate::error::{HarnessError, Result};
use crate::hosts::Pod;

/// One attempt of `skiff-echo call`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Wire", into = "Wire")]
pub enum CallResult {
    /// The backend answered. `peer` is the address as the client saw it:
    /// getpeername(2) for TCP and connected UDP, recvfrom(2)'s source for
    /// unconnected UDP. Through a service it must be the VIP, not the backend.
    Ok {
        backend: String,
        peer: SocketAddr,
        elapsed_ms: u64,
    },
    Failed {
        error: String,
        kind: FailureKind,
        elapsed_ms: u64,
    },
}

impl CallResult {
    /// The answering backend's `--name`, if the attempt succeeded.
    pub fn backend(&self) -> Option<&str> {
        match self {
            CallResult::Ok { backend, .. } => Some(backend),
            CallResult::Failed { .. } => None,
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, CallResult::Ok { .. })
    }
}

/// Why an attempt failed, coarse enough for tests to assert on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    /// RST or ICMP port unreachable: nothing listens there.
    Refused,
    /// ICMP host/net unreachable, or no route (e.g. a ClusterIP the datapath
    /// does not know hits the node's `unreachable` route).
    Unreachable,
    /// No answer in time.
    Timeout,
    Other,
}

impl FailureKind {
    pub fn of(err: &io::Error) -> FailureKind {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => FailureKind::Refused,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                FailureKind::Unreachable
            }
            // A socket read timeout surfaces as EAGAIN.
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => FailureKind::Timeout,
            _ => FailureKind::Other,
        }
    }
}

/// Runs `skiff-echo call <args>` in `pod` and returns its attempts.
pub fn call(pod: &Pod, args: &[&str]) -> Result<Vec<CallResult>> {
    let mut command = pod.command(echo_binary()?);
    command.arg("call").args(args);
    parse_call_output(&cmd::run(&mut command)?)
}

/// Parses `skiff-echo call`'s stdout: one [`CallResult`] per non-empty line.
pub fn parse_call_output(stdout: &str) -> Result<Vec<CallResult>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|cause| HarnessError::CallOutput {
                line: line.to_owned(),
                cause,
            })
        })
        .collect()
}

/// The flat JSON object on the wire: `{"ok":true,"backend":…,"peer":…}` or
/// `{"ok":false,"error":…,"kind":…,"elapsed_ms":…}`.
#[derive(Serialize, Deserialize)]
struct Wire {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peer: Option<SocketAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<FailureKind>,
    elapsed_ms: u64,
}

impl TryFrom<Wire> for CallResult {
    type Error = String;

    fn try_from(w: Wire) -> Result<CallResult, String> {
        match (w.ok, w.backend, w.peer, w.error, w.kind) {
            (true, Some(backend), Some(peer), None, None) => Ok(CallResult::Ok {
                backend,
                peer,
                elapsed_ms: w.elapsed_ms,
            }),
            (false, None, None, Some(error), Some(kind)) => Ok(CallResult::Failed {
                error,
                kind,
                elapsed_ms: w.elapsed_ms,
            }),
            _ => Err("ok:true needs backend and peer, ok:false needs error and kind".into()),
        }
    }
}

impl From<CallResult> for Wire {
    fn from(r: CallResult) -> Wire {
        match r {
            CallResult::Ok {
                backend,
                peer,
                elapsed_ms,
            } => Wire {
                ok: true,
                backend: Some(backend),
                peer: Some(peer),
                error: None,
                kind: None,
                elapsed_ms,
            },
            CallResult::Failed {
                error,
                kind,
                elapsed_ms,
            } => Wire {
                ok: false,
                backend: None,
                peer: None,
                error: Some(error),
                kind: Some(kind),
                elapsed_ms,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches_the_wire_format() {
        let ok = CallResult::Ok {
            backend: "web-1".into(),
            peer: "10.96.0.10:80".parse().unwrap(),
            elapsed_ms: 1,
        };
        let failed = CallResult::Failed {
            error: "Connection refused (os error 111)".into(),
            kind: FailureKind::Refused,
            elapsed_ms: 3,
        };
        let ok_json = serde_json::to_string(&ok).unwrap();
        assert_eq!(
            ok_json,
            r#"{"ok":true,"backend":"web-1","peer":"10.96.0.10:80","elapsed_ms":1}"#
        );
        let failed_json = serde_json::to_string(&failed).unwrap();
        assert_eq!(
            failed_json,
            r#"{"ok":false,"error":"Connection refused (os error 111)","kind":"refused","elapsed_ms":3}"#
        );
        let parsed = parse_call_output(&format!("{ok_json}\n\n{failed_json}\n")).unwrap();
        assert_eq!(parsed, [ok, failed]);
    }

    #[test]
    fn rejects_inconsistent_lines() {
        assert!(parse_call_output(r#"{"ok":true,"elapsed_ms":1}"#).is_err());
        assert!(parse_call_output("ready").is_err());
    }

    #[test]
    fn classifies_errors() {
        let kind = |code| FailureKind::of(&io::Error::from_raw_os_error(code));
        assert_eq!(kind(libc::ECONNREFUSED), FailureKind::Refused);
        assert_eq!(kind(libc::EHOSTUNREACH), FailureKind::Unreachable);
        assert_eq!(kind(libc::ENETUNREACH), FailureKind::Unreachable);
        assert_eq!(kind(libc::EAGAIN), FailureKind::Timeout);
        assert_eq!(kind(libc::ETIMEDOUT), FailureKind::Timeout);
        assert_eq!(kind(libc::EPERM), FailureKind::Other);
    }
}
