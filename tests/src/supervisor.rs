//! Keeping the daemons of a persisted cluster (`cargo xtask up`) running.
//!
//! A process of our own rather than systemd units: skiff runs on machines
//! without systemd (containers, this project's own dev box), and each agent
//! must start inside its node's netns, which the harness's `Node::command`
//! does and a unit file could only imitate with `ip netns exec` (which hides
//! /sys/fs/cgroup and /sys/fs/bpf from the agent). Being every daemon's
//! parent, the supervisor learns of an exit at once, with its status, by
//! `waitpid`, and needs no polling of pid files that may name a reused pid.

use std::convert::Infallible;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::daemon::{Daemon, DaemonSpec};
use crate::error::{HarnessError, Result};
use crate::lock::{ClusterLock, INHERITED_FD_ENV};

/// How often exits are looked for: a killed daemon is back within this.
const POLL: Duration = Duration::from_millis(100);
/// A run this long was no crash loop: the next exit restarts at once.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// The delay after the first quick exit; it doubles with each further one.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// On the first start, how long the next component waits for this one.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The builder of a component's command line, called for every start (a
/// `Command` runs once).
pub type CommandBuilder = Box<dyn Fn() -> Result<Command>>;

/// One daemon to keep running.
pub struct Component {
    /// Names its pid file `<run_dir>/<name>.pid` and log `<log_dir>/<name>.log`.
    pub name: String,
    pub command: CommandBuilder,
    /// The cgroup to start it in, as [`DaemonSpec::cgroup`].
    pub cgroup: Option<PathBuf>,
    /// Whether it serves yet: on the first start the components after it
    /// wait for this (etcd before skiff-control, which needs it).
    pub ready: Box<dyn Fn() -> bool>,
}

/// Where the supervisor keeps runtime files and logs.
#[derive(Debug, Clone, Copy)]
pub struct SupervisorDirs<'a> {
    pub run_dir: &'a Path,
    pub log_dir: &'a Path,
}

/// Starts `components` in order, then restarts each one that exits, logging
/// to stdout (the supervisor's own log) which component, how it exited and
/// its restart count. Holds the cluster lock its starter shared with it
/// ([`crate::Cluster::share_lock_with`]) until it is killed.
pub fn supervise(components: Vec<Component>, dirs: SupervisorDirs<'_>) -> Result<Infallible> {
    let _lock = ClusterLock::inherited()?;
    say(&format!(
        "supervisor {} watching {}",
        std::process::id(),
        components
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let mut slots: Vec<Slot> = components.into_iter().map(Slot::new).collect();
    for slot in &mut slots {
        slot.start(dirs);
        slot.wait_ready();
    }
    loop {
        for slot in &mut slots {
            slot.tend(dirs);
        }
        thread::sleep(POLL);
    }
}

struct Slot {
    component: Component,
    running: Option<Running>,
    restarts: u32,
    /// Exits in a row that came sooner than [`STABLE_AFTER`].
    quick_exits: u32,
    start_at: Instant,
}

struct Running {
    daemon: Daemon,
    since: Instant,
}

impl Slot {
    fn new(component: Component) -> Slot {
        Slot {
            component,
            running: None,
            restarts: 0,
            quick_exits: 0,
            start_at: Instant::now(),
        }
    }

    fn name(&self) -> &str {
        &self.component.name
    }

    /// Reaps an exited daemon and schedules its restart, or starts it when
    /// its time has come.
    fn tend(&mut self, dirs: SupervisorDirs<'_>) {
        match &self.running {
            Some(running) => {
                if let Some(status) = reap(running.daemon.pid()) {
                    let ran = running.since.elapsed();
                    let pid = running.daemon.pid();
                    self.running = None;
                    self.quick_exits = if ran < STABLE_AFTER {
                        self.quick_exits + 1
                    } else {
                        0
                    };
                    let delay = self.backoff();
                    let line = format!(
                        "{} (pid {pid}) exited ({}) after {:.1} s; restart {} in {:.1} s",
                        self.name(),
                        describe(status),
                        ran.as_secs_f64(),
                        self.restarts + 1,
                        delay.as_secs_f64(),
                    );
                    say(&line);
                    // The daemon's own log says so too, where its output
                    // stops and the next run's begins.
                    note_in(&self.log_path(dirs), &line);
                    self.start_at = Instant::now() + delay;
                }
            }
            None if Instant::now() >= self.start_at => {
                self.restarts += 1;
                self.start(dirs);
            }
            None => {}
        }
    }

    fn backoff(&self) -> Duration {
        backoff(self.quick_exits)
    }

    fn start(&mut self, dirs: SupervisorDirs<'_>) {
        match self.spawn(dirs) {
            Ok(daemon) => {
                if self.restarts == 0 {
                    say(&format!("started {} as pid {}", self.name(), daemon.pid()));
                } else {
                    say(&format!(
                        "restarted {} as pid {} (restart {})",
                        self.name(),
                        daemon.pid(),
                        self.restarts
                    ));
                }
                self.running = Some(Running {
                    daemon,
                    since: Instant::now(),
                });
            }
            Err(error) => {
                self.quick_exits += 1;
                let delay = self.backoff();
                say(&format!(
                    "cannot start {}: {error}; retry in {:.1} s",
                    self.name(),
                    delay.as_secs_f64()
                ));
                self.start_at = Instant::now() + delay;
            }
        }
    }

    fn log_path(&self, dirs: SupervisorDirs<'_>) -> PathBuf {
        dirs.log_dir.join(format!("{}.log", self.name()))
    }

    fn spawn(&self, dirs: SupervisorDirs<'_>) -> Result<Daemon> {
        let name = self.name();
        // A builder that panics (a node's netns is gone) is a failed start,
        // not the end of every other component's supervision.
        let mut command = panic::catch_unwind(AssertUnwindSafe(|| (self.component.command)()))
            .map_err(|_| {
            HarnessError::Environment(format!("building {name}'s command panicked"))
        })??;
        command.env_remove(INHERITED_FD_ENV);
        Daemon::spawn_logging_to(
            command,
            DaemonSpec {
                name,
                state_dir: dirs.run_dir,
                cgroup: self.component.cgroup.as_deref(),
            },
            self.log_path(dirs),
        )
    }

    fn wait_ready(&self) {
        let Some(running) = &self.running else {
            return;
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        while running.daemon.is_running() && Instant::now() < deadline {
            if (self.component.ready)() {
                say(&format!("{} is ready", self.name()));
                return;
            }
            thread::sleep(POLL);
        }
        say(&format!(
            "{} is not ready after {:.1} s; starting the next component anyway",
            self.name(),
            running.since.elapsed().as_secs_f64()
        ));
    }
}

/// The delay before the next start after `quick_exits` exits in a row
/// that came too soon: none after a stable run, then 0.5 s, doubling up to
/// 30 s, so a crash loop neither spins nor waits long once fixed.
fn backoff(quick_exits: u32) -> Duration {
    match quick_exits {
        0 => Duration::ZERO,
        n => BACKOFF_BASE
            .saturating_mul(1 << (n - 1).min(16))
            .min(BACKOFF_MAX),
    }
}

/// The exit status of child `pid` if it has exited, collected so it leaves
/// no zombie.
fn reap(pid: u32) -> Option<ExitStatus> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid(2) on a child of this process, without blocking.
    let reaped = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    (reaped == pid as libc::pid_t).then(|| ExitStatus::from_raw(status))
}

/// `killed by signal: 9 (SIGKILL)` or `exit status: 1`.
fn describe(status: ExitStatus) -> String {
    match status.signal() {
        Some(_) => format!("killed by {status}"),
        None => status.to_string(),
    }
}

/// One log line, stamped with the UTC time of day.
fn say(line: &str) {
    println!("{}", stamped(line));
}

/// `line` appended to a daemon's log; a log that cannot be written is said
/// in the supervisor's.
fn note_in(log: &Path, line: &str) {
    let appended = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut file| writeln!(file, "{}", stamped(line)));
    if let Err(error) = appended {
        say(&format!("cannot write to {}: {error}", log.display()));
    }
}

fn stamped(line: &str) -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (h, m, s) = (seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    format!("{h:02}:{m:02}:{s:02} supervisor: {line}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::backoff;

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_thirty() {
        let delays: Vec<Duration> = (0..9).map(backoff).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(
            delays,
            [0, 500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000].map(ms)
        );
        assert_eq!(backoff(u32::MAX), Duration::from_secs(30));
    }
}
