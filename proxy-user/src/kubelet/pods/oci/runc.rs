//! The `runc` command line (Debian's runc), with its state under
//! `<state-dir>/runc` so that this node's containers are kept apart from
//! any other runc user's and found again by a restarted agent.
use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

const RUNC: &str = "runc";

#[derive(Debug, thiserror::Error)]
#[error("`runc {command}` failed: {detail}")]
pub struct RuncError {
    command: String,
    detail: String,
}

#[derive(Debug, Clone)]
pub struct Runc {
    root: PathBuf,
}

impl Runc {
    pub fn new(state_dir: &Path) -> Runc {
        Runc {
            root: state_dir.join("runc"),
        }
    }

    /// The runc a container monitor is told the root of.
    pub fn with_root(root: PathBuf) -> Runc {
        Runc { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(RUNC);
        command.arg("--root").arg(&self.root).stdin(Stdio::null());
        command
    }

    /// Runs a short runc command; its stderr is the error.
    async fn call(&self, args: &[&str]) -> Result<String, RuncError> {
        let error = |detail: String| RuncError {
            command: args.join(" "),
            detail,
        };
        let output = self
            .command()
            .args(args)
            .output()
            .await
            .map_err(|e| error(e.to_string()))?;
        match output.status.success() {
            true => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
            false => Err(error(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            )),
        }
    }

    /// Sends `signal` (`TERM`, `KILL`) to the container's init.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), RuncError> {
        self.call(&["kill", id, signal]).await.map(drop)
    }

    /// Removes the container whatever its state; one that is not there is
    /// fine.
    pub async fn delete(&self, id: &str) -> Result<(), RuncError> {
        match self.call(&["delete", "--force", id]).await {
            Err(error) if error.detail.contains("does not exist") => Ok(()),
            other => other.map(drop),
        }
    }

    /// The container's status (`created`, `running`, `stopped`), `None` if
    /// runc does not know it.
    pub async fn status(&self, id: &str) -> Option<String> {
        let state = self.call(&["state", id]).await.ok()?;
        let state: serde_json::Value = serde_json::from_str(&state).ok()?;
        state["status"].as_str().map(str::to_owned)
    }

    /// `runc run`: the container in the foreground, its exit status runc's.
    pub fn run(&self, bundle: &Path, id: &str) -> std::process::Command {
        let mut command = std::process::Command::new(RUNC);
        command
            .arg("--root")
            .arg(&self.root)
            .arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(id);
        command
    }
}

/// A running container as `runc exec` reaches it: its process
/// environment (`NAME=value`) and working directory go with each command.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    pub runc: Runc,
    pub id: String,
    pub env: Vec<String>,
    pub cwd: String,
}

impl ExecTarget {
    /// `runc exec` of `argv`, output discarded.
    pub fn command(&self, argv: &[String]) -> tokio::process::Command {
        let mut command = self.session(argv, false);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    }

    /// `runc exec` of `argv` for a client's session (`kubectl exec`), its
    /// stdio the caller's to choose (stdin starts as none). With `tty`,
    /// runc gives the command a terminal in the container and relays it
    /// to its own stdio, which must then be a terminal, whose size it
    /// passes on.
    pub fn session(&self, argv: &[String], tty: bool) -> tokio::process::Command {
        let mut command = self.runc.command();
        command.arg("exec").arg("--cwd").arg(&self.cwd);
        if tty {
            command.arg("--tty");
        }
        for variable in &self.env {
            command.arg("--env").arg(variable);
        }
        command.arg(&self.id).args(argv);
        command
    }
}
