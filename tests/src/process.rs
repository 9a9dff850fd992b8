//! A child process that is killed when its guard goes out of scope, so a
//! failing test never leaves a server running.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::cmd::render;
use crate::error::{HarnessError, Result};

#[derive(Debug)]
pub struct ProcessGuard {
    child: Child,
    command: String,
}

impl ProcessGuard {
    /// Spawns `cmd` as is.
    pub fn spawn(cmd: &mut Command) -> Result<ProcessGuard> {
        let command = render(cmd);
        let child = cmd.spawn().map_err(|cause| HarnessError::Spawn {
            command: command.clone(),
            cause,
        })?;
        Ok(ProcessGuard { child, command })
    }

    /// Spawns `cmd` with its stdout piped and waits until it prints a line
    /// equal to `marker` (`skiff-echo serve` prints `ready` once its ports are
    /// bound). The rest of stdout is drained and dropped so the child never
    /// blocks on a full pipe.
    pub fn spawn_ready(cmd: &mut Command, marker: &str, timeout: Duration) -> Result<ProcessGuard> {
        let mut guard = ProcessGuard::spawn(cmd.stdout(Stdio::piped()))?;
        let stdout = guard.child.stdout.take().expect("stdout was piped");
        let (ready_tx, ready_rx) = mpsc::channel();
        let marker = marker.to_owned();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(|l| l.ok()) {
                if line == marker {
                    // The receiver may have timed out and gone: nothing to do then.
                    let _ = ready_tx.send(());
                    break;
                }
            }
            lines.for_each(drop);
        });
        match ready_rx.recv_timeout(timeout) {
            Ok(()) => Ok(guard),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // Its stdout is closed; it has most likely exited. The kill
                // only matters if it has not, and keeps wait() from blocking.
                let _ = guard.child.kill();
                let status = guard
                    .child
                    .wait()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                Err(HarnessError::Command {
                    command: guard.command.clone(),
                    status,
                    stderr: "exited before it was ready".into(),
                })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(HarnessError::Timeout {
                what: format!("`{}` to print a ready line", guard.command),
                timeout_ms: timeout.as_millis(),
            }),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (not yet exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        // Either may fail only because the child is already gone and reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
