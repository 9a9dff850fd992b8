//! skiff-agent: the node agent. Loads skiff's eBPF programs onto the node's
//! cgroup, watches Services and EndpointSlices in etcd, and keeps the
//! datapath maps equal to what they ask for.
mod cluster;
mod datapath;
mod health_check;
mod http;
mod malloc;
mod node;
mod node_address;
mod orphans;
mod pods;
mod store;
mod sync;
mod telemetry;

use std::{io::IsTerminal as _, net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio::sync::mpsc;
use tracing::{error, info};

use crate::{
    cluster::etcd_watch,
    datapath::{
        Datapath, MaglevParams, MaglevSize, Observer, ServiceCidr, Settings, Uplink, XdpChoice,
        render_status,
    },
    sync::Syncer,
    telemetry::Telemetry,
};

/// skiff-agent programs this node's eBPF service load balancer.
///
/// It attaches connect/sendmsg/recvmsg/getpeername hooks to a cgroup v2
/// subtree, so that a process in it connecting to a Service's ClusterIP is
/// sent straight to a backend pod; given an uplink, it NATs the packets of
/// NodePorts, load balancer IPs and external IPs arriving there (TCX, with
/// an XDP fast path). It keeps the programs' maps in sync with the Services
/// and EndpointSlices stored in etcd. Programs and maps are pinned:
/// stopping or restarting the agent never interrupts traffic.
///
/// `skiff-agent status` prints what a node's maps hold, agent running or not.
#[derive(Debug, Parser)]
#[command(
    name = "skiff-agent",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Option<Args>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the frontends, backends and counters programmed on a node, read
    /// from its pinned maps (like bpftool, but readable).
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// The node whose maps to read, under /sys/fs/bpf/skiff/<node-name>.
    #[arg(long, env = "SKIFF_NODE_NAME", value_parser = node_name)]
    node_name: Option<String>,

    /// The pin directory to read instead of the node's default.
    #[arg(long, env = "SKIFF_BPFFS")]
    bpffs: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
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

    /// The node's network interface that outside traffic arrives on. Given,
    /// the per-packet programs attach to its TCX ingress and egress and its
    /// XDP hook; never defaulted, so nothing attaches to an interface by
    /// accident.
    #[arg(long, env = "SKIFF_UPLINK")]
    uplink: Option<String>,

    /// An interface facing this node's pods (e.g. the pod bridge), given
    /// more than once for several. Its ingress gets the per-packet NAT too,
    /// so pod traffic the socket hooks did not see (a process outside
    /// --cgroup) still reaches Services.
    #[arg(
        long = "pod-interface",
        env = "SKIFF_POD_INTERFACES",
        value_delimiter = ','
    )]
    pod_interfaces: Vec<String>,

    /// The uplink's XDP fast path: `auto` tries native (driver) mode and
    /// falls back to generic, then to none; `native` and `generic` insist
    /// on their mode; `off` leaves all per-packet work to TCX.
    #[arg(long, env = "SKIFF_XDP", value_enum, default_value = "auto")]
    xdp: XdpChoice,

    /// Entries of each external frontend's Maglev table: a prime up to
    /// 16381. Larger tables spread flows more evenly over many backends.
    /// Every node of a cluster must use the same size.
    #[arg(long, env = "SKIFF_MAGLEV_TABLE_SIZE", default_value_t = MaglevSize::DEFAULT)]
    maglev_table_size: MaglevSize,

    /// Seed of the per-packet flow hash and the Maglev tables. Every node of
    /// a cluster must use the same seed, so that a flow picks the same
    /// backend whichever node it enters.
    #[arg(long, env = "SKIFF_HASH_SEED", default_value_t = 0x5eed_0001)]
    hash_seed: u32,

    /// The address NodePorts are served on. [default: the uplink's IPv4
    /// address]
    #[arg(long, env = "SKIFF_NODE_IP")]
    node_ip: Option<std::net::Ipv4Addr>,

    /// Where to serve /metrics (Prometheus) and /healthz.
    #[arg(long, env = "SKIFF_METRICS_BIND", default_value = "127.0.0.1:10249")]
    metrics_bind: SocketAddr,

    // Running pods (issue #5); off by default, the agent then only proxies.
    // Fields of `Args` itself, not a flattened struct: `Cli` tells a run
    // from a subcommand by `Args`' group, which a nested one would hide.
    /// Register this node (Node object and Lease, refreshed every 10 s) and
    /// run the pods bound to it as processes: each in a netns of its own
    /// with a veth on --pod-bridge and an address from --pod-cidr, and in
    /// cgroups below --cgroup. Needs --pod-cidr and the node's address
    /// (--node-ip or --uplink).
    #[arg(long, env = "SKIFF_RUN_PODS", requires = "pod_cidr")]
    run_pods: bool,

    /// This node's pod CIDR (written to the Node's spec.podCIDR); its first
    /// address is the pods' gateway and must be --pod-bridge's.
    #[arg(long, env = "SKIFF_POD_CIDR")]
    pod_cidr: Option<pods::ipam::Cidr>,

    /// The existing bridge the pods' veths join. The agent never creates
    /// bridges nor touches an uplink.
    #[arg(long, env = "SKIFF_POD_BRIDGE", default_value = "cbr0")]
    pod_bridge: String,

    /// Start of the names of the pods' netns (`<prefix>-<namespace>.<name>`);
    /// it must start with `skiff` so skiff's clean-up finds them.
    #[arg(long, env = "SKIFF_POD_NETNS_PREFIX", default_value = "skiff-pod", value_parser = netns_prefix)]
    pod_netns_prefix: String,

    /// A destination pods route via the gateway, given more than once for
    /// several. Pods always reach their pod CIDR and the service CIDR;
    /// nothing else unless given here (a real node may want 0.0.0.0/0).
    #[arg(long = "pod-route", env = "SKIFF_POD_ROUTES", value_delimiter = ',')]
    pod_routes: Vec<String>,

    /// Where the kubelet API (`/containerLogs/...`, for `kubectl logs`) is
    /// served. [default: <node-ip>:10250]
    #[arg(long, env = "SKIFF_KUBELET_BIND")]
    kubelet_bind: Option<SocketAddr>,

    /// Where pod address allocations and container logs are kept.
    /// [default: /run/skiff/agent/<node-name>]
    #[arg(long, env = "SKIFF_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// First CrashLoopBackOff delay in seconds (doubling up to 5 min). Tests
    /// shorten it; Kubernetes' is 10.
    #[arg(long, hide = true, default_value_t = 10.0)]
    crashloop_base: f64,

    /// Seconds between Node and Lease updates. Tests shorten it; the
    /// kubelet's is 10.
    #[arg(long, hide = true, default_value_t = 10.0)]
    heartbeat_interval: f64,
}

fn netns_prefix(prefix: &str) -> Result<String, String> {
    let valid = prefix.starts_with("skiff")
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    match valid {
        true => Ok(prefix.to_owned()),
        false => Err("must start with `skiff` and hold only letters, digits, '-' and '.'".into()),
    }
}

fn default_bpffs(node_name: &str) -> PathBuf {
    PathBuf::from("/sys/fs/bpf/skiff").join(node_name)
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
    malloc::configure();
    let cli = Cli::parse();
    let result = match (cli.command, cli.run) {
        (Some(Command::Status(args)), _) => status(args),
        (None, Some(args)) => run(args),
        (None, None) => unreachable!("clap requires the agent's arguments without a subcommand"),
    };
    match result {
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
        .unwrap_or_else(|| default_bpffs(&args.node_name));
    info!(
        node = %args.node_name,
        etcd = ?args.etcd,
        cgroup = %args.cgroup.display(),
        bpffs = %bpffs.display(),
        service_cidr = %args.service_cidr,
        metrics = %args.metrics_bind,
        uplink = ?args.uplink,
        xdp = ?args.xdp,
        maglev_table_size = %args.maglev_table_size,
        "skiff-agent starting"
    );
    let node_ip = match (args.node_ip, &args.uplink) {
        (Some(ip), _) => Some(ip),
        (None, Some(uplink)) => Some(
            node_address::ipv4_of(uplink)
                .with_context(|| format!("finding the node address on --uplink {uplink}"))?,
        ),
        (None, None) => None,
    };
    let settings = Settings {
        bpffs: bpffs.clone(),
        cgroup: args.cgroup.clone(),
        uplink: args.uplink.clone().map(|name| Uplink {
            name,
            xdp: args.xdp,
        }),
        service_cidr: args.service_cidr,
        maglev: MaglevParams {
            size: args.maglev_table_size,
            seed: args.hash_seed,
        },
        node_ip,
        pod_interfaces: args.pod_interfaces.clone(),
    };
    let datapath = Datapath::open(settings).with_context(|| {
        format!(
            "setting up the datapath (pins in {}, hooks on cgroup {})",
            bpffs.display(),
            args.cgroup.display()
        )
    })?;

    let observer = Observer::open(&bpffs).context("opening the pinned maps for /metrics")?;
    let listener = tokio::net::TcpListener::bind(args.metrics_bind)
        .await
        .with_context(|| format!("serving /metrics and /healthz on {}", args.metrics_bind))?;
    let telemetry = Telemetry::default();
    tokio::spawn(http::serve(listener, telemetry.clone(), observer));

    if args.run_pods {
        let node_ip =
            node_ip.context("--run-pods needs the node's address: --node-ip or --uplink")?;
        start_pods(&args, node_ip).await?;
    }

    let (events_tx, events_rx) = mpsc::channel(64);
    tokio::spawn(etcd_watch::run(args.etcd.clone(), events_tx));
    let syncer = Syncer::new(args.node_name.clone(), node_ip, datapath, telemetry);
    let syncer = tokio::spawn(syncer.run(events_rx));

    tokio::select! {
        signal = shutdown_signal() => {
            let signal = signal.context("listening for signals")?;
            info!(signal, "stopping; the pinned programs and maps keep serving");
        }
        result = syncer => {
            result.context("the sync task failed")??;
            anyhow::bail!("the etcd watch ended");
        }
    }
    Ok(())
}

/// Registers the node and starts running its pods, in the background.
async fn start_pods(args: &Args, node_ip: std::net::Ipv4Addr) -> anyhow::Result<()> {
    let pod_cidr = args.pod_cidr.context("--run-pods needs --pod-cidr")?;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/run/skiff/agent").join(&args.node_name));
    let ipam = pods::ipam::Ipam::new(pod_cidr, &state_dir)
        .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
    let logs = pods::Logs::new(&state_dir);
    let kubelet_bind = args
        .kubelet_bind
        .unwrap_or_else(|| SocketAddr::from((node_ip, 10250)));
    let listener = tokio::net::TcpListener::bind(kubelet_bind)
        .await
        .with_context(|| format!("serving the kubelet API on {kubelet_bind}"))?;
    tokio::spawn(pods::log_server::serve(listener, logs.clone()));
    let mut routes = vec![args.service_cidr.to_string()];
    routes.extend(args.pod_routes.iter().cloned());
    let plumbing = pods::Plumbing {
        bridge: args.pod_bridge.clone(),
        pod_cidr,
        routes,
    };
    let bridge = &args.pod_bridge;
    match plumbing
        .fix_bridge_address(&state_dir)
        .with_context(|| format!("fixing the MAC address of --pod-bridge {bridge}"))?
    {
        pods::BridgeAddress::Fixed(address) => {
            info!(%bridge, %address, "pod bridge MAC address fixed: pod veths joining or leaving no longer change the pods' gateway MAC")
        }
        pods::BridgeAddress::AlreadyFixed(address) => {
            info!(%bridge, %address, "pod bridge MAC address was fixed before this restart; left as it is")
        }
    }
    let config = pods::Config {
        node_name: args.node_name.clone(),
        node_ip,
        netns_prefix: args.pod_netns_prefix.clone(),
        cgroup: args.cgroup.clone(),
        crashloop_base: std::time::Duration::from_secs_f64(args.crashloop_base.max(0.1)),
    };
    info!(%pod_cidr, kubelet = %kubelet_bind, state = %state_dir.display(), "running this node's pods");
    let interval = std::time::Duration::from_secs_f64(args.heartbeat_interval.max(0.1));
    let info = node::node_info(
        args.node_name.clone(),
        node_ip,
        pod_cidr.to_string(),
        kubelet_bind.port(),
    );
    let endpoints = args.etcd.clone();
    // Like the service watch, wait for etcd rather than fail: the node
    // comes up whichever starts first.
    tokio::spawn(async move {
        let kv = skiff_etcd::kv::Kv::connect_retrying(&endpoints).await;
        let store = store::Store::new(kv);
        tokio::spawn(node::heartbeat(store.clone(), info, interval));
        let ctx = pods::Context::new(config, store, ipam, logs, plumbing);
        pods::run(std::sync::Arc::new(ctx), endpoints).await;
    });
    Ok(())
}

fn status(args: StatusArgs) -> anyhow::Result<()> {
    let bpffs = match (args.bpffs, args.node_name) {
        (Some(bpffs), _) => bpffs,
        (None, Some(node_name)) => default_bpffs(&node_name),
        (None, None) => anyhow::bail!("status needs --node-name or --bpffs"),
    };
    let observer = Observer::open(&bpffs)
        .with_context(|| format!("reading the maps pinned under {}", bpffs.display()))?;
    print!(
        "{}",
        render_status(&observer.frontends()?, &observer.drops()?)
    );
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
