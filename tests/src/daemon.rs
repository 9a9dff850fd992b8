//! Detached processes that outlive the process that started them (etcd and
//! agents for `cargo xtask up`): own session, output to a log file, and a pid
//! file that `Daemon::stop` (i.e. `cargo xtask down`) uses.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::cgroup;
use crate::cmd::render;
use crate::error::{HarnessError, Result};
use crate::exec;

/// Where and how to run a daemon.
#[derive(Debug, Clone, Copy)]
pub struct DaemonSpec<'a> {
    /// Names the pid file `<state_dir>/<name>.pid` and log `<state_dir>/<name>.log`.
    pub name: &'a str,
    pub state_dir: &'a Path,
    /// A cgroup v2 directory to run in (created if missing). Use one below
    /// `Cluster::cgroup_dir()` so that tearing the cluster down kills the
    /// daemon even without its pid file. Leave `None` for a command that
    /// already joins a cgroup (`Pod::command`): the later join would win.
    pub cgroup: Option<&'a Path>,
}

/// A started daemon. Dropping this value does not stop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    name: String,
    pid: u32,
    start: u64,
    pid_file: PathBuf,
    log_file: PathBuf,
}

impl Daemon {
    /// Starts `cmd` detached: new session (no controlling terminal, no
    /// SIGHUP when the starting terminal goes), stdin from /dev/null, stdout
    /// and stderr appended to the log. Writes the pid file once it runs.
    pub fn spawn(cmd: Command, spec: DaemonSpec<'_>) -> Result<Daemon> {
        let log_file = spec.state_dir.join(format!("{}.log", spec.name));
        Daemon::spawn_logging_to(cmd, spec, log_file)
    }

    /// [`Daemon::spawn`] with the log at `log_file` instead of the state
    /// directory: a log outlives a reboot where a pid file must not.
    pub fn spawn_logging_to(
        mut cmd: Command,
        spec: DaemonSpec<'_>,
        log_file: PathBuf,
    ) -> Result<Daemon> {
        fs::create_dir_all(spec.state_dir).map_err(|e| {
            HarnessError::io(format!("cannot create {}", spec.state_dir.display()), e)
        })?;
        if let Some(log_dir) = log_file.parent() {
            fs::create_dir_all(log_dir)
                .map_err(|e| HarnessError::io(format!("cannot create {}", log_dir.display()), e))?;
        }
        let pid_file = spec.state_dir.join(format!("{}.pid", spec.name));
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_file)
            .map_err(|e| HarnessError::io(format!("cannot open {}", log_file.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| HarnessError::io(format!("cannot open {}", log_file.display()), e))?;
        if let Some(dir) = spec.cgroup {
            cgroup::create(dir)?;
            exec::join_cgroup(&mut cmd, dir)?;
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        // SAFETY: setsid(2) only; the child is never a process-group leader
        // right after fork, so it cannot fail.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|cause| HarnessError::Spawn {
            command: render(&cmd),
            cause,
        })?;
        let pid = child.id();
        // The start time tells this process from a later one with the same pid.
        let start = start_time(pid)
            .map_err(|e| HarnessError::io(format!("cannot read /proc/{pid}/stat"), e))?;
        fs::write(&pid_file, format!("{pid} {start}\n"))
            .map_err(|e| HarnessError::io(format!("cannot write {}", pid_file.display()), e))?;
        Ok(Daemon {
            name: spec.name.to_owned(),
            pid,
            start,
            pid_file,
            log_file,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Still running (not exited, not a zombie) and not replaced by a new
    /// process with the same pid.
    pub fn is_running(&self) -> bool {
        is_alive(self.pid, self.start)
    }

    pub fn pid_file(&self) -> &Path {
        &self.pid_file
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The pid of the daemon `name` recorded in `state_dir`, if that process
    /// is still running.
    pub fn running_pid(state_dir: &Path, name: &str) -> Result<Option<u32>> {
        let recorded = read_pid_file(&state_dir.join(format!("{name}.pid")))?;
        Ok(recorded
            .filter(|&(pid, start)| is_alive(pid, start))
            .map(|(pid, _)| pid))
    }

    /// Stops the daemon `name` recorded in `state_dir`: SIGTERM, then SIGKILL
    /// if it is still there after `grace`. Removes the pid file. Returns
    /// whether a process was running.
    pub fn stop(state_dir: &Path, name: &str, grace: Duration) -> Result<bool> {
        let pid_file = state_dir.join(format!("{name}.pid"));
        let recorded = read_pid_file(&pid_file)?;
        if recorded.is_none() && !pid_file.exists() {
            return Ok(false);
        }
        let running = match recorded {
            Some((pid, start)) if is_alive(pid, start) => {
                signal(pid, libc::SIGTERM);
                let deadline = Instant::now() + grace;
                while is_alive(pid, start) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(20));
                }
                if is_alive(pid, start) {
                    signal(pid, libc::SIGKILL);
                }
                true
            }
            _ => false,
        };
        fs::remove_file(&pid_file)
            .map_err(|e| HarnessError::io(format!("cannot remove {}", pid_file.display()), e))?;
        Ok(running)
    }
}

/// `(pid, start time)` from a pid file; `None` when there is none or it is
/// not one of ours.
fn read_pid_file(pid_file: &Path) -> Result<Option<(u32, u64)>> {
    let text = match fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(HarnessError::io(
                format!("cannot read {}", pid_file.display()),
                e,
            ));
        }
    };
    let mut fields = text.split_whitespace();
    let pid: Option<u32> = fields.next().and_then(|p| p.parse().ok());
    let start: Option<u64> = fields.next().and_then(|s| s.parse().ok());
    Ok(pid.zip(start))
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) of the process the pid file names, checked alive with
    // the recorded start time just before.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}

/// State (field 3) and start time (field 22, clock ticks since boot) from
/// /proc/PID/stat. The command name (field 2) may hold spaces, so count from
/// its closing ')'.
fn stat_fields(pid: u32) -> io::Result<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let malformed = || io::Error::other(format!("malformed /proc/{pid}/stat: {stat:?}"));
    let after_comm = stat.rfind(')').ok_or_else(malformed)? + 1;
    let mut rest = stat[after_comm..].split_whitespace();
    let state = rest
        .next()
        .and_then(|s| s.chars().next())
        .ok_or_else(malformed)?;
    let start = rest
        .nth(18)
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    Ok((state, start))
}

fn start_time(pid: u32) -> io::Result<u64> {
    stat_fields(pid).map(|(_, start)| start)
}

/// Running (not a zombie) and still the process the pid file recorded.
fn is_alive(pid: u32, start: u64) -> bool {
    stat_fields(pid).is_ok_and(|(state, s)| s == start && state != 'Z')
}
