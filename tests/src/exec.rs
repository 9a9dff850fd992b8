//! Starting a process inside a skiff netns, optionally in a cgroup.
//!
//! Not `ip netns exec`: it remounts `/sys` in a private mount namespace, which
//! hides `/sys/fs/cgroup` and `/sys/fs/bpf` from the agent. Instead the child
//! joins the cgroup and then calls setns(CLONE_NEWNET) between fork and exec.
//! Both files are opened before the fork: between fork and exec a
//! multi-threaded parent's child may only make async-signal-safe calls, so the
//! hook does two raw syscalls and nothing that allocates.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::error::{HarnessError, Result};

/// A `Command` for `program` that runs in the netns whose file is `netns`
/// (`/run/netns/NAME`), first moving into `cgroup` if one is given.
///
/// Panics when either file cannot be opened: that only happens when the
/// cluster is gone or the caller is not root, and a spawn error there would
/// read like "program not found".
pub(crate) fn in_netns(program: &OsStr, netns: &Path, cgroup: Option<&Path>) -> Command {
    let mut cmd = Command::new(program);
    if let Some(dir) = cgroup {
        join_cgroup(&mut cmd, dir).unwrap_or_else(|e| panic!("{e}"));
    }
    let ns: OwnedFd = File::open(netns)
        .unwrap_or_else(|e| panic!("cannot open network namespace {}: {e}", netns.display()))
        .into();
    // SAFETY: the hook only calls setns(2) on an fd owned by the closure.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Makes the child of `cmd` move itself into the cgroup v2 directory `dir`
/// before it execs (and before any hook registered later, such as setns).
pub(crate) fn join_cgroup(cmd: &mut Command, dir: &Path) -> Result<()> {
    let path = dir.join("cgroup.procs");
    let procs: OwnedFd = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| HarnessError::io(format!("cannot open {}", path.display()), e))?
        .into();
    // SAFETY: the hook only calls write(2) on an fd owned by the closure, with a
    // static buffer. Writing "0" to cgroup.procs moves the writing process.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}
