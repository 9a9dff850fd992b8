//! One run of the real kube-proxy in node 1's netns (never the root
//! netns), in iptables mode, reading the kube-proxy plane's API server.
//!
//! Its flags keep it to that netns and to what the bench measures:
//! - `--conntrack-max-per-core=0` and both conntrack TCP timeouts at 0, so
//!   it leaves conntrack's limits and timeouts alone (nf_conntrack_max and
//!   the module's hashsize are global to the machine);
//! - metrics and health on node 1's own address, beside the agent's
//!   127.0.0.1:10249 and 127.0.0.1:10256 there;
//! - `--bind-address` is node 1's address, so it takes its node IP from
//!   there instead of a Node object the bench does not register;
//! - NodePorts on node 1's address only;
//! - `--iptables-sync-period=1h`: one full sync per start and no periodic
//!   resync competing with the measurements;
//! - `--oom-score-adj=0`: no OOM protection for a bench process.
//!
//! No route for the service CIDR is added: the bench's traffic to the
//! iptables plane's VIPs is forwarded (from the client pod) or addressed
//! to the node (NodePorts), and both are DNATed in PREROUTING, before
//! routing; only connects from node 1's own processes would need one.
//!
//! kube-proxy and the iptables-restore runs it starts live in a cgroup of
//! their own below the cluster's, so a stop kills all of them at once
//! (`cgroup.kill`), and tearing the cluster down kills them too.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use skiff_tests::Node;

use crate::bench::{catalog::CLUSTER_CIDR, metrics::gauge};

const METRICS_PORT: u16 = 10249;
const HEALTHZ_PORT: u16 = 10256;
/// kube-proxy's own histogram of its `syncProxyRules` runs.
const SYNC_DURATION: &str = "kubeproxy_sync_proxy_rules_duration_seconds";
/// Each poll runs curl in node 1's netns: at 10 a second that took CPU
/// from the sync it waits for. The figure is kube-proxy's own measurement,
/// so polling less often does not change it.
const POLL: Duration = Duration::from_secs(1);
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How kube-proxy's first full sync went.
pub enum FirstSync {
    /// Its own measurement of the sync (the first observation of
    /// `kubeproxy_sync_proxy_rules_duration_seconds`).
    Took(Duration),
    /// No sync finished within the timeout; what kube-proxy was still
    /// running then (`iptables-restore`: the sync itself was in progress).
    TimedOut(Duration, Vec<String>),
}

/// A running kube-proxy; dropping it kills it and what it started.
pub struct KubeProxy {
    child: Child,
    cgroup: PathBuf,
    node: Node,
    log: PathBuf,
}

impl KubeProxy {
    /// Starts `binary` in `node`'s netns and in the cgroup `cgroup`
    /// (created here), reading the API server of `kubeconfig`; its output
    /// is appended to `log`.
    pub fn start(
        binary: &Path,
        node: &Node,
        kubeconfig: &Path,
        cgroup: &Path,
        log: &Path,
    ) -> Result<Self> {
        fs::create_dir_all(cgroup).with_context(|| format!("creating {}", cgroup.display()))?;
        let output = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let errors = output.try_clone()?;
        let ip = node.ip();
        let mut command = node.command("sh");
        // The shell joins the cgroup, then becomes kube-proxy: nothing of
        // it ever runs outside the cgroup.
        command
            .args([
                "-c",
                r#"echo $$ > "$1/cgroup.procs" && shift && exec "$@""#,
                "sh",
            ])
            .arg(cgroup)
            .arg(binary)
            .arg("--proxy-mode=iptables")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            // v1 Endpoints: skiff-control serves no v1beta1 EndpointSlices.
            .arg("--feature-gates=EndpointSliceProxying=false")
            .arg(format!("--hostname-override={}", node.name()))
            .arg(format!("--bind-address={ip}"))
            .arg(format!("--cluster-cidr={CLUSTER_CIDR}"))
            .arg(format!("--nodeport-addresses={ip}/32"))
            .arg(format!("--metrics-bind-address={ip}:{METRICS_PORT}"))
            .arg(format!("--healthz-bind-address={ip}:{HEALTHZ_PORT}"))
            .args([
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--iptables-sync-period=1h",
                "--oom-score-adj=0",
            ])
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors);
        let child = command
            .spawn()
            .with_context(|| format!("starting {} in {}", binary.display(), node.netns()))?;
        Ok(Self {
            child,
            cgroup: cgroup.to_owned(),
            node: node.clone(),
            log: log.to_owned(),
        })
    }

    /// Waits for kube-proxy's first full sync of the API's Services and
    /// Endpoints into node 1's iptables, at most `timeout`.
    pub fn first_sync(&mut self, timeout: Duration) -> Result<FirstSync> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "kube-proxy exited ({status}) before its first sync: {}",
                    last_lines(&self.log, 3)
                );
            }
            // Not serving yet while it starts.
            if let Ok(text) = self.metrics() {
                let count = gauge(&text, &format!("{SYNC_DURATION}_count")).unwrap_or(0.0);
                let sum = gauge(&text, &format!("{SYNC_DURATION}_sum")).unwrap_or(0.0);
                // Every Service and Endpoints exists before kube-proxy
                // starts and --iptables-sync-period is 1 h, so no second
                // sync follows the first; were there more, their mean.
                if count >= 1.0 {
                    return Ok(FirstSync::Took(Duration::from_secs_f64(sum / count)));
                }
            }
            if started.elapsed() > timeout {
                return Ok(FirstSync::TimedOut(started.elapsed(), self.children()));
            }
            thread::sleep(POLL);
        }
    }

    /// The commands running in kube-proxy's cgroup besides kube-proxy.
    fn children(&self) -> Vec<String> {
        let procs = fs::read_to_string(self.cgroup.join("cgroup.procs")).unwrap_or_default();
        procs
            .lines()
            .filter(|pid| pid.parse() != Ok(self.child.id()))
            .filter_map(|pid| fs::read(format!("/proc/{pid}/cmdline")).ok())
            .filter_map(|cmdline| {
                let program = cmdline.split(|&byte| byte == 0).next()?;
                let name = Path::new(std::str::from_utf8(program).ok()?).file_name()?;
                Some(name.to_string_lossy().into_owned())
            })
            .collect()
    }

    /// kube-proxy's /metrics, fetched from inside node 1's netns.
    fn metrics(&self) -> Result<String> {
        let url = format!("http://{}:{METRICS_PORT}/metrics", self.node.ip());
        let output = self
            .node
            .command("curl")
            .args(["-sf", "--max-time", "5", &url])
            .output()
            .context("running curl")?;
        if !output.status.success() {
            bail!("curl {url} failed ({})", output.status);
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for KubeProxy {
    /// Kills everything in its cgroup (kube-proxy and any iptables-restore
    /// it is running), reaps it, and removes the cgroup.
    fn drop(&mut self) {
        if fs::write(self.cgroup.join("cgroup.kill"), "1").is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while fs::read_to_string(self.cgroup.join("cgroup.procs"))
            .is_ok_and(|procs| !procs.trim().is_empty())
            && Instant::now() < deadline
        {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_dir(&self.cgroup);
    }
}

/// The last `n` lines of `log`, joined, for an error message.
fn last_lines(log: &Path, n: usize) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "{} (log: {})",
        lines[lines.len().saturating_sub(n)..].join(" | "),
        log.display()
    )
}
