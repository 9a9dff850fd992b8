//! The kube-proxy baselines on node 1, and only there: the real
//! kube-proxy 1.20 in iptables mode (it writes its rules with Debian's
//! default iptables backend, iptables-nft), and the rules kube-proxy's
//! nftables mode writes, generated and loaded with `nft -f`. One baseline
//! at a time: the other variants run with the node's ruleset empty, so no
//! conntrack or NAT hook of a baseline taxes them.

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
    kube_api::KubeApi,
    kube_proxy::{FirstSync, KubeProxy},
    nftables,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    Iptables,
    Nftables,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Iptables => "kube-proxy-iptables",
            Baseline::Nftables => "nftables",
        }
    }

    /// What loading it means, for progress lines.
    pub fn loading(self) -> &'static str {
        match self {
            Baseline::Iptables => {
                "creating the Services through the kube-proxy plane's API, then starting the real \
                 kube-proxy (iptables mode) on node1"
            }
            Baseline::Nftables => "loading the generated nftables rules on node1 with nft -f",
        }
    }

    /// The name of its sync time, for progress lines.
    pub fn sync_figure(self) -> &'static str {
        match self {
            Baseline::Iptables => "kube-proxy's first full sync (its sync_proxy_rules_duration)",
            Baseline::Nftables => "nft -f",
        }
    }
}

/// What a load did.
pub enum Loaded {
    /// How long the load took: for kube-proxy its own measurement of its
    /// first full sync, for nft the run of `nft -f`.
    Took(Duration),
    /// Given up after this long (the run's sync timeout), with the
    /// commands of the load still running then.
    TimedOut(Duration, Vec<String>),
}

/// What the iptables baseline needs: the kube-proxy binary, the API server
/// it reads, and where it runs and logs.
pub struct KubeProxyPlane<'rt> {
    pub binary: PathBuf,
    pub api: KubeApi<'rt>,
    /// The cgroup kube-proxy runs in (below the cluster's).
    pub cgroup: PathBuf,
}

/// Which baseline node 1 holds, so switching between variants of one round
/// reloads only when needed.
pub struct NodeRules<'rt> {
    node: Node,
    work_dir: PathBuf,
    kube: KubeProxyPlane<'rt>,
    /// While the iptables baseline is loaded.
    kube_proxy: Option<KubeProxy>,
    loaded: Option<Baseline>,
}

impl<'rt> NodeRules<'rt> {
    /// Starts from an empty ruleset in `node`.
    pub fn new(node: Node, work_dir: PathBuf, kube: KubeProxyPlane<'rt>) -> Result<Self> {
        let mut rules = Self {
            node,
            work_dir,
            kube,
            kube_proxy: None,
            loaded: Some(Baseline::Iptables),
        };
        rules.clear()?;
        Ok(rules)
    }

    /// Makes `baseline`'s rules for `services` the node's only rules (or
    /// none); returns how long the load took, or that it timed out.
    ///
    /// iptables: the Services (and their Endpoints) go into the API server
    /// (those not there yet; the API keeps every Service it was given, so
    /// kube-proxy also programs the 3 datapath Services during the scale
    /// sweep), then a fresh kube-proxy programs the node from empty.
    pub fn load(
        &mut self,
        baseline: Baseline,
        services: &[Svc],
        timeout: Duration,
    ) -> Result<Loaded> {
        self.clear()?;
        let loaded = match baseline {
            Baseline::Iptables => self.start_kube_proxy(services, timeout)?,
            Baseline::Nftables => self.nft_load(services, timeout)?,
        };
        self.loaded = Some(baseline);
        Ok(loaded)
    }

    fn start_kube_proxy(&mut self, services: &[Svc], timeout: Duration) -> Result<Loaded> {
        self.kube
            .api
            .ensure(services)
            .context("creating the Services through the kube-proxy plane's API")?;
        let mut kube_proxy = KubeProxy::start(
            &self.kube.binary,
            &self.node,
            self.kube.api.kubeconfig(),
            &self.kube.cgroup,
            &self.work_dir.join("kube-proxy.log"),
        )?;
        let synced = kube_proxy.first_sync(timeout);
        self.kube_proxy = Some(kube_proxy);
        Ok(match synced? {
            FirstSync::Took(took) => Loaded::Took(took),
            FirstSync::TimedOut(after, running) => Loaded::TimedOut(after, running),
        })
    }

    fn nft_load(&self, services: &[Svc], timeout: Duration) -> Result<Loaded> {
        let file = self.work_dir.join("nftables.nft");
        let text = nftables::script(
            services,
            CLUSTER_CIDR,
            &skiff_tests::SERVICE_CIDR.to_string(),
        );
        fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        let input = fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
        let mut command = self.node.command("nft");
        command.args(["-f", "-"]).stdin(input);
        let errors = self.work_dir.join("nft.stderr");
        let loaded = run_timed(&mut command, timeout, &errors)
            .with_context(|| format!("nft -f {} in {}", file.display(), self.node.netns()))?;
        // Hundreds of MB at 100 000 Services; the generator makes it again.
        let _ = fs::remove_file(&file);
        Ok(loaded)
    }

    /// Stops kube-proxy (it leaves its rules behind) and empties the
    /// node's ruleset (iptables-nft's tables and the nftables baseline's
    /// alike); a no-op when nothing is loaded.
    pub fn clear(&mut self) -> Result<()> {
        if self.loaded.take().is_some() {
            self.kube_proxy = None;
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
            return Ok(Loaded::TimedOut(started.elapsed(), vec!["nft".to_owned()]));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `iptables-nft-restore --version` (the backend kube-proxy's `iptables`
/// runs), for the report.
pub fn iptables_version() -> String {
    Command::new("iptables-nft-restore")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|error| format!("unknown ({error})"))
}
