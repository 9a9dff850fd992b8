//! Loading the kube-proxy baselines into node 1's netns, and only there:
//! `iptables-nft-restore` (Debian's default iptables backend, as most
//! kube-proxy images use) and `nft -f`. One baseline at a time: the other
//! variants run with the node's ruleset empty, so no conntrack or NAT hook
//! of a baseline taxes them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use skiff_tests::Node;

use super::{
    catalog::{CLUSTER_CIDR, Svc},
    iptables, nftables,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    Iptables,
    Nftables,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Iptables => "iptables",
            Baseline::Nftables => "nftables",
        }
    }
}

/// What a load did.
pub enum Loaded {
    Took(Duration),
    /// Killed after this long (the run's sync timeout).
    TimedOut(Duration),
}

/// Which baseline node 1 holds, so switching between variants of one round
/// reloads only when needed.
pub struct NodeRules {
    node: Node,
    work_dir: PathBuf,
    loaded: Option<Baseline>,
}

impl NodeRules {
    /// Starts from an empty ruleset in `node`.
    pub fn new(node: Node, work_dir: PathBuf) -> Result<Self> {
        let mut rules = Self {
            node,
            work_dir,
            loaded: Some(Baseline::Iptables),
        };
        rules.clear()?;
        Ok(rules)
    }

    /// Makes `baseline`'s rules for `services` the node's only rules (or
    /// none); returns how long the load took, or that it timed out.
    pub fn load(
        &mut self,
        baseline: Baseline,
        services: &[Svc],
        timeout: Duration,
    ) -> Result<Loaded> {
        self.clear()?;
        let (file, program, args): (_, _, &[&str]) = match baseline {
            Baseline::Iptables => (
                self.work_dir.join("iptables.rules"),
                "iptables-nft-restore",
                &[],
            ),
            Baseline::Nftables => (self.work_dir.join("nftables.nft"), "nft", &["-f", "-"]),
        };
        let text = match baseline {
            Baseline::Iptables => iptables::restore_input(services, CLUSTER_CIDR),
            Baseline::Nftables => nftables::script(
                services,
                CLUSTER_CIDR,
                &skiff_tests::SERVICE_CIDR.to_string(),
            ),
        };
        fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        let input = fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
        let mut command = self.node.command(program);
        command.args(args).stdin(input);
        let errors = self.work_dir.join(format!("{program}.stderr"));
        let loaded = run_timed(&mut command, timeout, &errors)
            .with_context(|| format!("{program} < {} in {}", file.display(), self.node.netns()))?;
        // Hundreds of MB at 100 000 Services; the generator makes it again.
        let _ = fs::remove_file(&file);
        self.loaded = Some(baseline);
        Ok(loaded)
    }

    /// Empties the node's ruleset (the kube-proxy table and iptables-nft's
    /// tables alike); a no-op when nothing is loaded.
    pub fn clear(&mut self) -> Result<()> {
        if self.loaded.take().is_some() {
            let mut flush = self.node.command("nft");
            flush.args(["flush", "ruleset"]);
            let errors = self.work_dir.join("nft-flush.stderr");
            run_timed(&mut flush, Duration::from_secs(600), &errors)
                .with_context(|| format!("nft flush ruleset in {}", self.node.netns()))?;
        }
        Ok(())
    }

    pub fn loaded(&self) -> Option<Baseline> {
        self.loaded
    }
}

/// Runs `command` to completion or kills it after `timeout`. Its stderr
/// goes to a file: a failing load of 100 000 services can say a lot.
fn run_timed(command: &mut Command, timeout: Duration, errors: &Path) -> Result<Loaded> {
    let stderr =
        fs::File::create(errors).with_context(|| format!("creating {}", errors.display()))?;
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("could not start")?;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                let stderr = fs::read_to_string(errors).unwrap_or_default();
                let first_lines: Vec<&str> = stderr.lines().take(5).collect();
                bail!("failed ({status}): {}", first_lines.join(" | "));
            }
            return Ok(Loaded::Took(started.elapsed()));
        }
        if started.elapsed() > timeout {
            // Killed mid-transaction, nothing is committed.
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Loaded::TimedOut(started.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `iptables-nft-restore --version`, for the report.
pub fn iptables_version() -> String {
    Command::new("iptables-nft-restore")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|error| format!("unknown ({error})"))
}
