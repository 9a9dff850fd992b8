//! The watch fan-out: every agent holds its own etcd watch on the Service
//! and EndpointSlice prefixes, so one Service change is sent once per
//! node. `skiff-etcd watch-fanout` simulates the agents (one gRPC
//! connection and list-then-watch each, spread over a few processes) and
//! times one change from its write to every watcher; this runs it twice,
//! each on a fresh etcd on loopback: watching etcd directly, and through
//! etcd's own `grpc-proxy` (Debian's etcd), which coalesces identical
//! watches into one. etcd's and the proxy's CPU and RSS come from /proc.

use std::{
    fs,
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use skiff_tests::{Etcd, ProcessGuard, ScratchDir, etcd_tool_binary};

use super::{
    plan::Plan,
    progress::Progress,
    rig::{cpu_seconds, rss_mb, status_mb},
};

/// Watcher processes: several, as agents are several processes, but few
/// enough that each holds hundreds of connections.
const PROCESSES: usize = 4;
const ETCD_BINARY: &str = "/usr/bin/etcd";
const PROXY_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Both runs at one number of watchers.
#[derive(Debug, Clone, Serialize)]
pub struct WatchFanout {
    pub watchers: usize,
    pub processes: usize,
    pub changes: usize,
    pub direct: FanoutRun,
    pub grpc_proxy: FanoutRun,
}

/// One run: the delays `skiff-etcd watch-fanout` measured, and what the
/// servers used.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FanoutRun {
    pub delays: Option<Delays>,
    /// etcd's RSS before the watchers connected, once they all watched, and
    /// its peak (VmHWM) at the end.
    pub etcd_idle_rss_mb: Option<f64>,
    pub etcd_rss_mb: Option<f64>,
    pub etcd_peak_rss_mb: Option<f64>,
    /// CPU milliseconds per change: from every watcher watching to the
    /// last change received (the changes, the untimed first one, and the
    /// pauses between them), divided by the changes written.
    pub etcd_cpu_ms_per_change: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_rss_mb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_cpu_ms_per_change: Option<f64>,
    /// The simulated agents' own share: `skiff-etcd watch-fanout` and its
    /// watcher processes, on the same cores.
    pub watchers_cpu_ms_per_change: Option<f64>,
    /// The machine's 1-minute load average as the run started: the
    /// watchers share the cores with etcd and whatever else runs.
    pub load_before: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `skiff-etcd watch-fanout`'s summary, in milliseconds from the write.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delays {
    /// Every (change, watcher) receipt.
    pub arrival_p50_ms: f64,
    pub arrival_p99_ms: f64,
    /// Per change, the last watcher's receipt.
    pub all_arrived_p50_ms: f64,
    pub all_arrived_p99_ms: f64,
    /// The write's own round trip (etcd's commit).
    pub write_p50_ms: f64,
    /// Watches that broke and re-listed during the run; 0 in a sound run.
    pub relists: u64,
}

pub fn measure(plan: &Plan, progress: &Progress) -> WatchFanout {
    let watchers = plan.fanout_watchers;
    let changes = plan.fanout_changes;
    let run = |proxied: bool| {
        let mut run = FanoutRun::default();
        if let Err(error) = measure_run(&mut run, proxied, watchers, changes) {
            run.error = Some(format!("{error:#}"));
        }
        run
    };
    progress.step(format_args!(
        "watch fan-out: {watchers} watchers on etcd directly, {changes} changes"
    ));
    let direct = run(false);
    progress.step(format_args!(
        "watch fan-out: {watchers} watchers through etcd grpc-proxy, {changes} changes"
    ));
    let grpc_proxy = run(true);
    WatchFanout {
        watchers,
        processes: PROCESSES,
        changes,
        direct,
        grpc_proxy,
    }
}

/// A fresh etcd (and proxy), the watchers, the changes: fills `run` in as
/// figures come.
fn measure_run(run: &mut FanoutRun, proxied: bool, watchers: usize, changes: usize) -> Result<()> {
    let etcd = Etcd::start(&[]).context("starting etcd on loopback")?;
    let etcd_endpoint = etcd.local_endpoint();
    let scratch = ScratchDir::new("skiff-bench-grpc-proxy");
    let proxy = proxied
        .then(|| GrpcProxy::start(etcd.config().client_port, scratch.path()))
        .transpose()?;
    let watch_endpoint = proxy
        .as_ref()
        .map_or_else(|| etcd_endpoint.clone(), GrpcProxy::endpoint);
    run.etcd_idle_rss_mb = rss_mb(etcd.pid()).ok();
    run.load_before = load_average().ok();

    let binary = etcd_tool_binary()?;
    let mut child = Command::new(&binary)
        .arg("watch-fanout")
        .args(["--watch-endpoint", &watch_endpoint])
        .args(["--write-endpoint", &etcd_endpoint])
        .args(["--watchers", &watchers.to_string()])
        .args(["--processes", &PROCESSES.to_string()])
        .args(["--changes", &changes.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let cpu = |pid: Option<u32>| pid.and_then(|pid| cpu_seconds(pid).ok());
    let proxy_pid = proxy.as_ref().map(GrpcProxy::pid);
    let watchers_cpu = || tree_cpu_seconds(child.id()).ok();

    let watching = lines.next();
    let cpu_start = [cpu(Some(etcd.pid())), cpu(proxy_pid), watchers_cpu()];
    run.etcd_rss_mb = rss_mb(etcd.pid()).ok();
    run.proxy_rss_mb = proxy.as_ref().and_then(|proxy| rss_mb(proxy.pid()).ok());
    if !watching.is_some_and(|line| line.contains("\"watching\"")) {
        let status = child.wait()?;
        bail!("skiff-etcd watch-fanout's watchers did not come up ({status})");
    }

    let summary = lines.next();
    let cpu_end = [cpu(Some(etcd.pid())), cpu(proxy_pid), watchers_cpu()];
    let writes = (changes + 1) as f64;
    let [etcd_ms, proxy_ms, watchers_ms] =
        [0, 1, 2].map(|at| Some((cpu_end[at]? - cpu_start[at]?) * 1e3 / writes));
    run.etcd_cpu_ms_per_change = etcd_ms;
    run.proxy_cpu_ms_per_change = proxy_ms;
    run.watchers_cpu_ms_per_change = watchers_ms;
    run.etcd_peak_rss_mb = status_mb(etcd.pid(), "VmHWM").ok();
    let status = child.wait()?;
    let summary = summary
        .with_context(|| format!("skiff-etcd watch-fanout ended without a summary ({status})"))?;
    run.delays =
        Some(serde_json::from_str(&summary).with_context(|| format!("reading {summary}"))?);
    Ok(())
}

/// `etcd grpc-proxy start` on a free loopback port, in front of the etcd
/// on `etcd_port`; killed on drop.
struct GrpcProxy {
    process: ProcessGuard,
    addr: SocketAddr,
}

impl GrpcProxy {
    fn start(etcd_port: u16, dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let addr = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .context("finding a free loopback port")?;
        let log = fs::File::create(dir.join("grpc-proxy.log")).context("creating its log")?;
        let process = ProcessGuard::spawn(
            Command::new(ETCD_BINARY)
                .args(["grpc-proxy", "start"])
                .arg(format!("--endpoints=127.0.0.1:{etcd_port}"))
                .arg(format!("--listen-addr={addr}"))
                .arg(format!("--advertise-client-url={addr}"))
                .arg(format!("--data-dir={}", dir.join("data").display()))
                .stdout(Stdio::null())
                .stderr(log),
        )?;
        let deadline = Instant::now() + PROXY_START_TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "etcd grpc-proxy did not listen on {addr} in {PROXY_START_TIMEOUT:?} (log in {})",
                    dir.display()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { process, addr })
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// The 1-minute load average, from /proc/loadavg.
fn load_average() -> Result<f64> {
    let text = fs::read_to_string("/proc/loadavg").context("reading /proc/loadavg")?;
    text.split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .with_context(|| format!("malformed /proc/loadavg: {text:?}"))
}

/// CPU seconds of `pid` and its children (`skiff-etcd watch-fanout` and
/// its watcher processes).
fn tree_cpu_seconds(pid: u32) -> Result<f64> {
    let children = format!("/proc/{pid}/task/{pid}/children");
    let children = fs::read_to_string(&children).with_context(|| format!("reading {children}"))?;
    let mut seconds = cpu_seconds(pid)?;
    for child in children.split_whitespace() {
        seconds += cpu_seconds(
            child
                .parse()
                .with_context(|| format!("a child pid {child:?}"))?,
        )?;
    }
    Ok(seconds)
}

impl WatchFanout {
    pub fn runs(&self) -> [(&'static str, &FanoutRun); 2] {
        [("direct", &self.direct), ("grpc-proxy", &self.grpc_proxy)]
    }

    /// What a run did not produce: each run's delays and etcd's figures.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for (name, run) in self.runs() {
            let figures = [
                ("delays", run.delays.is_some()),
                ("etcd CPU", run.etcd_cpu_ms_per_change.is_some()),
                ("etcd RSS", run.etcd_rss_mb.is_some()),
            ];
            for (what, present) in figures {
                if !present {
                    missing.push(format!("watch fan-out, {name}: {what}: {:?}", run.error));
                }
            }
        }
        missing
    }
}

pub const NOTE: &str = "Watch fan-out: `skiff-etcd watch-fanout` simulates the agents: each watcher has its own \
    gRPC connection (etcd-client, the agent's keep-alives) and runs the agent's own list-then-watch \
    (skiff-etcd's `ListWatch`) of /registry/services/specs/ and /registry/endpointslices/, in 4 processes \
    with RLIMIT_NOFILE raised to its hard limit. Once all have listed, one untimed change proves every \
    watch live; then a probe Service is written to etcd (never through the proxy) with the wall-clock \
    time in an annotation, and each watcher's delay is its watch response's arrival minus that time \
    (same machine, same clock); the next change follows once every watcher has received the previous \
    one and 200 ms have passed. Each run has a fresh etcd (Debian's, on 127.0.0.1, data in /tmp); the \
    proxied run puts `etcd grpc-proxy start` (same binary, 127.0.0.1) between the watchers and etcd. \
    CPU per change is each process's run time (/proc/PID/task/*/schedstat) from all watching to the \
    last change received, divided by the changes written (the pauses' keep-alives included); RSS is VmRSS once every watcher watches and VmHWM at the end. The watchers share the machine's cores \
    with etcd, so the delays include their own scheduling: an upper bound on what agents on their own \
    nodes would see.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_without_delays_or_etcd_figures_is_missing_with_its_error() {
        let measured = FanoutRun {
            delays: Some(Delays {
                arrival_p50_ms: 1.0,
                arrival_p99_ms: 2.0,
                all_arrived_p50_ms: 2.0,
                all_arrived_p99_ms: 3.0,
                write_p50_ms: 1.0,
                relists: 0,
            }),
            etcd_rss_mb: Some(30.0),
            etcd_cpu_ms_per_change: Some(4.0),
            ..FanoutRun::default()
        };
        let fanout = WatchFanout {
            watchers: 10,
            processes: 4,
            changes: 1,
            direct: measured,
            grpc_proxy: FanoutRun {
                error: Some("etcd grpc-proxy did not listen".into()),
                ..FanoutRun::default()
            },
        };
        let missing = fanout.missing();
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(
            missing
                .iter()
                .all(|line| line.starts_with("watch fan-out, grpc-proxy")
                    && line.contains("did not listen"))
        );
    }
}
