//! A container's monitor: `skiff-agent container-monitor`, a small process
//! of its own (own process group, not the agent's child once the agent
//! is gone) that runs `runc run` in the foreground with the container's
//! output appended to its log file, and writes runc's exit status to the
//! bundle's `exit` file when the container ends. So an agent that
//! restarts meanwhile adopts the container and still learns its real exit
//! code.
use std::{
    fs::{self, OpenOptions},
    io,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use super::{bundle::Bundle, runc::Runc};

/// The hidden subcommand's name.
pub const SUBCOMMAND: &str = "container-monitor";

/// How a container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// The monitor ended without recording one (it was killed).
    Unknown,
}

impl Exit {
    /// Kubernetes' `exitCode` (runc reports a signal as 128 + its number).
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Unknown => 255,
        }
    }
}

/// `container-monitor`'s arguments.
#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    #[arg(long)]
    pub runc_root: PathBuf,
    #[arg(long)]
    pub bundle: PathBuf,
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub log: PathBuf,
}

/// The monitor's body: runs the container to its end and records how it
/// ended.
pub fn run(args: MonitorArgs) -> anyhow::Result<()> {
    let bundle = Bundle::at(args.bundle);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)?;
    let status = Runc::with_root(args.runc_root)
        .run(bundle.dir(), &args.id)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    use std::os::unix::process::ExitStatusExt as _;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255);
    let exit = bundle.exit_file();
    let partial = exit.with_extension("partial");
    fs::write(&partial, code.to_string())?;
    fs::rename(&partial, &exit)?;
    Ok(())
}

/// A container's monitor as the agent holds it.
pub enum Monitor {
    /// Started by this agent.
    Child(tokio::process::Child),
    /// Started by an earlier agent: its end is seen by polling.
    Adopted { pid: i32 },
}

/// Starts the monitor of the container prepared in `bundle`.
pub fn spawn(runc: &Runc, bundle: &Bundle, id: &str, log: &Path) -> io::Result<Monitor> {
    let monitor_log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(bundle.monitor_log())?;
    let child = tokio::process::Command::new(std::env::current_exe()?)
        .arg(SUBCOMMAND)
        .arg("--runc-root")
        .arg(runc.root())
        .arg("--bundle")
        .arg(bundle.dir())
        .arg("--id")
        .arg(id)
        .arg("--log")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(monitor_log)
        // Its own process group: no signal meant for the agent's (a
        // terminal's ^C, a supervisor's group kill) reaches the pods.
        .process_group(0)
        .spawn()?;
    if let Some(pid) = child.id() {
        fs::write(bundle.monitor_pid(), pid.to_string())?;
    }
    Ok(Monitor::Child(child))
}

impl Monitor {
    /// The monitor an earlier agent left for this bundle, if it still runs
    /// or recorded an exit the agent has not seen yet.
    pub fn adopt(bundle: &Bundle) -> Option<Monitor> {
        let pid: i32 = fs::read_to_string(bundle.monitor_pid())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (alive(pid) || bundle.exit_file().exists()).then_some(Monitor::Adopted { pid })
    }

    /// Waits for the container to end. Cancel-safe.
    pub async fn wait(&mut self, bundle: &Bundle) -> Exit {
        match self {
            Monitor::Child(child) => {
                let _ = child.wait().await;
            }
            Monitor::Adopted { pid } => {
                while alive(*pid) && !bundle.exit_file().exists() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        fs::read_to_string(bundle.exit_file())
            .ok()
            .and_then(|code| code.trim().parse().ok())
            .map_or(Exit::Unknown, Exit::Code)
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}
