//! skiff-agent: the node agent. Loads skiff's eBPF programs onto the node's
//! cgroup, watches Services and EndpointSlices in etcd, and keeps the
//! datapath maps equal to what they ask for.
mod cluster;
mod datapath;
mod sync;

use std::{io::IsTerminal as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use tokio::sync::mpsc;
use tracing::{error, info};

use crate::{
    cluster::etcd_watch,
    datapath::{Datapath, ServiceCidr},
    sync::Syncer,
};

/// skiff-agent programs this node's eBPF service load balancer.
///
/// It attaches connect/sendmsg/recvmsg/getpeername hooks to a cgroup v2
/// subtree, so that a process in it connecting to a Service's ClusterIP is
/// sent straight to a backend pod, and keeps the hooks' maps in sync with the
/// Services and EndpointSlices stored in etcd. Programs and maps are pinned:
/// stopping or restarting the agent never interrupts traffic.
#[derive(Debug, Parser)]
#[command(name = "skiff-agent", version)]
struct Args {
    /// This node's name; it also names the default pin directory.
    #[arg(long, env = "SKIFF_NODE_NAME", value_parser = node_name)]
    node_name: String,

    /// etcd client URLs, comma-separated or given more than once.
    #[arg(
        long,
        env = "SKIFF_ETCD",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    etcd: Vec<String>,

    /// cgroup v2 directory whose processes get service load balancing. On a
    /// real node this is the cgroup v2 root (e.g. /sys/fs/cgroup); it has no
    /// default so that nothing is ever attached somewhere by accident.
    #[arg(long, env = "SKIFF_CGROUP")]
    cgroup: PathBuf,

    /// The cluster's service CIDR. A connect to an address in it that no
    /// Service has is refused at once instead of hanging.
    #[arg(long, env = "SKIFF_SERVICE_CIDR", default_value = "10.96.0.0/12")]
    service_cidr: ServiceCidr,

    /// Directory on a bpf filesystem where the maps and program links are
    /// pinned, and found again after a restart.
    /// [default: /sys/fs/bpf/skiff/<node-name>]
    #[arg(long, env = "SKIFF_BPFFS")]
    bpffs: Option<PathBuf>,
}

/// Node names become a path component: hold them to Kubernetes' DNS
/// subdomain rule.
fn node_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(name.to_owned())
    } else {
        Err("must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit".into())
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(args: Args) -> anyhow::Result<()> {
    let bpffs = args
        .bpffs
        .clone()
        .unwrap_or_else(|| PathBuf::from("/sys/fs/bpf/skiff").join(&args.node_name));
    info!(
        node = %args.node_name,
        etcd = ?args.etcd,
        cgroup = %args.cgroup.display(),
        bpffs = %bpffs.display(),
        service_cidr = %args.service_cidr,
        "skiff-agent starting"
    );
    let datapath = Datapath::open(&bpffs, &args.cgroup, args.service_cidr).with_context(|| {
        format!(
            "setting up the datapath (pins in {}, hooks on cgroup {})",
            bpffs.display(),
            args.cgroup.display()
        )
    })?;

    let (events_tx, events_rx) = mpsc::channel(64);
    tokio::spawn(etcd_watch::run(args.etcd.clone(), events_tx));
    let syncer = tokio::spawn(Syncer::new(args.node_name.clone(), datapath).run(events_rx));

    tokio::select! {
        signal = shutdown_signal() => {
            let signal = signal.context("listening for signals")?;
            info!(signal, "stopping; the pinned programs and maps keep serving");
        }
        result = syncer => {
            result.context("the sync task failed")?;
            anyhow::bail!("the etcd watch ended");
        }
    }
    Ok(())
}

async fn shutdown_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}
