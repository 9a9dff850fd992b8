//! Starting a container's command as a process of the pod: in the pod's
//! netns and the container's cgroup, in a session of its own, with its
//! output appended to the container's log file. The process does not depend
//! on the agent: it keeps running (and logging) while the agent restarts.
//!
//! Between fork and exec a multi-threaded parent's child may only make
//! async-signal-safe calls, so every file is opened before the fork and the
//! hook makes three raw syscalls.
use std::{
    fs::{File, OpenOptions},
    io,
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use super::cgroup;
use crate::kubelet::volumes::Mount;

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub netns: PathBuf,
    pub cgroup: PathBuf,
    /// The container's volume mounts, for the runtime's spec.
    pub mounts: Vec<Mount>,
}

/// A container's main process.
pub enum Process {
    /// Started by this agent: its exit status is known.
    Child(tokio::process::Child),
    /// Found running in the container's cgroup after an agent restart: not
    /// our child, so only its end (the cgroup emptying) is seen.
    Adopted { cgroup: PathBuf },
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// An adopted process: its status went to init, not to us.
    Unknown,
}

impl Exit {
    /// Kubernetes' `exitCode`: a signal shows as 128 + its number.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal,
            Exit::Unknown => 255,
        }
    }
}

pub fn command(spec: &Spec, stdout: Stdio, stderr: Stdio) -> io::Result<tokio::process::Command> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the container has no command",
        ));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    let procs: OwnedFd = OpenOptions::new()
        .write(true)
        .open(spec.cgroup.join("cgroup.procs"))?
        .into();
    let netns: OwnedFd = File::open(&spec.netns)?.into();
    // SAFETY: the hook makes only async-signal-safe syscalls (write, setns,
    // setsid) on fds the closure owns, with a static buffer.
    unsafe {
        command.pre_exec(move || {
            // "0" moves the writing process into the cgroup.
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return Err(io::Error::last_os_error());
            }
            if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Its own session: no signal meant for the agent's terminal or
            // process group reaches a pod.
            libc::setsid();
            Ok(())
        });
    }
    Ok(command)
}

/// Starts the container's main process, its output appended to `log`.
pub fn spawn(spec: &Spec, log: &Path) -> io::Result<Process> {
    let file = OpenOptions::new().create(true).append(true).open(log)?;
    let mut command = command(spec, Stdio::from(file.try_clone()?), Stdio::from(file))?;
    Ok(Process::Child(command.spawn()?))
}

impl Process {
    /// The process already running in `cgroup`, if any.
    pub fn adopt(cgroup: &Path) -> Option<Process> {
        cgroup::populated(cgroup).then(|| Process::Adopted {
            cgroup: cgroup.to_owned(),
        })
    }

    /// Waits for the process to end. Cancel-safe.
    pub async fn wait(&mut self) -> Exit {
        match self {
            Process::Child(child) => match child.wait().await {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt as _;
                    match (status.code(), status.signal()) {
                        (Some(code), _) => Exit::Code(code),
                        (None, Some(signal)) => Exit::Signal(signal),
                        (None, None) => Exit::Unknown,
                    }
                }
                Err(_) => Exit::Unknown,
            },
            Process::Adopted { cgroup } => {
                while cgroup::populated(cgroup) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Exit::Unknown
            }
        }
    }
}
