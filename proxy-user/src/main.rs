//! skiff-agent: the node agent. Its service proxy (`proxy`) loads skiff's
//! eBPF programs onto the node's cgroup, watches Services and
//! EndpointSlices in etcd, and keeps the datapath maps equal to what they
//! ask for; with `--run-pods`, its kubelet (`kubelet`) registers the node
//! and runs the pods bound to it; its DNS server (`dns`) answers the
//! cluster's names, and its Ingress proxy (`ingress`) serves the
//! cluster's Ingresses on the node's address.
mod apiserver;
mod cli;
mod dns;
mod ingress;
mod kubelet;
mod malloc;
mod proxy;
mod sys;

use std::{io::IsTerminal as _, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context as _;
use tracing::{error, info, warn};

/// The port cluster DNS is served on.
const DNS_PORT: u16 = 53;

use crate::{
    cli::{Args, Command, ImagesCommand, StatusArgs, default_bpffs, default_state_dir},
    proxy::datapath::{MaglevParams, Settings, Uplink},
};

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
    let cli = cli::parse();
    let result = match (cli.command, cli.run) {
        (Some(Command::Status(args)), _) => status(args),
        (Some(Command::Images(command)), _) => images(command),
        (Some(Command::ContainerMonitor(args)), _) => kubelet::pods::oci::monitor::run(args),
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
    if let Some(tls) = skiff_etcd::kv::ClientTls::from_flags(
        args.etcd_cafile.clone(),
        args.etcd_certfile.clone(),
        args.etcd_keyfile.clone(),
    ) {
        skiff_etcd::kv::set_process_tls(tls);
    }
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
        source = ?args.source,
        metrics = %args.metrics_bind,
        healthz = %args.healthz_bind,
        uplink = ?args.uplink,
        xdp = ?args.xdp,
        maglev_table_size = %args.maglev_table_size,
        "skiff-agent starting"
    );
    let node_ip = match (args.node_ip, &args.uplink) {
        (Some(ip), _) => Some(ip),
        (None, Some(uplink)) => Some(
            proxy::node_address::ipv4_of(uplink)
                .with_context(|| format!("finding the node address on --uplink {uplink}"))?,
        ),
        (None, None) => None,
    };
    let node_ip6 = match (args.node_ip6, &args.uplink) {
        (Some(ip), _) => Some(ip),
        (None, Some(uplink)) => proxy::node_address::ipv6_of(uplink)
            .with_context(|| format!("finding the node's IPv6 address on --uplink {uplink}"))?,
        (None, None) => None,
    };
    let dns = dns_config(&args, node_ip);
    let dns_index = dns.as_ref().map(|_| dns::SharedIndex::default());
    let mut proxy_config = proxy_config(&args, bpffs, node_ip, node_ip6);
    proxy_config.dns = dns
        .as_ref()
        .zip(dns_index.clone())
        .map(|(config, index)| dns::LocalDns {
            server: match config.listen {
                SocketAddr::V4(listen) => listen,
                SocketAddr::V6(_) => unreachable!("the node address is IPv4"),
            },
            index,
        });
    let proxy = proxy::Proxy::start(proxy_config).await?;

    let api = api_connection(&args);
    if args.ingress {
        match node_ip {
            Some(ip) => {
                ingress::start(ingress_config(&args, ip, api.clone()), proxy.cluster()).await?
            }
            None => warn!("no node address (--node-ip or --uplink): Ingresses are not served"),
        }
    }

    if args.run_pods {
        let node_ip =
            node_ip.context("--run-pods needs the node's address: --node-ip or --uplink")?;
        let api = api.clone().context("--run-pods needs --kubeconfig")?;
        let config = kubelet_config(&args, node_ip, api)?;
        if let Some(dir) = args.image_dir.clone() {
            let state_dir = config.state_dir.clone();
            tokio::task::spawn_blocking(move || kubelet::images::import_dir(&state_dir, &dir))
                .await
                .context("the image import task failed")??;
        }
        kubelet::start(config).await?;
    }

    let syncer = proxy.sync(api);
    let dns_server = async {
        match dns.zip(dns_index) {
            Some((config, index)) => dns::serve(config, index).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        signal = shutdown_signal() => {
            let signal = signal.context("listening for signals")?;
            info!(signal, "stopping; the pinned programs and maps keep serving");
        }
        result = syncer => {
            result.context("the sync task failed")??;
            anyhow::bail!("the cluster watch ended");
        }
        result = dns_server => {
            result?;
            anyhow::bail!("the DNS server stopped");
        }
    }
    Ok(())
}

/// Where and how this node serves cluster DNS: on its address, port 53,
/// unless `--dns=false`. A node without an address serves none.
fn dns_config(args: &Args, node_ip: Option<std::net::Ipv4Addr>) -> Option<dns::Config> {
    if !args.dns {
        return None;
    }
    let Some(node_ip) = node_ip else {
        warn!("no node address (--node-ip or --uplink): not serving cluster DNS");
        return None;
    };
    Some(dns::Config {
        listen: SocketAddr::from((node_ip, DNS_PORT)),
        domain: args.cluster_domain.clone(),
        upstreams: args.dns_upstreams.clone(),
    })
}

fn proxy_config(
    args: &Args,
    bpffs: PathBuf,
    node_ip: Option<std::net::Ipv4Addr>,
    node_ip6: Option<std::net::Ipv6Addr>,
) -> proxy::Config {
    proxy::Config {
        node_name: args.node_name.clone(),
        source: match args.source {
            cli::Source::Etcd => proxy::Source::Etcd(args.etcd.clone()),
            cli::Source::KubeApi => proxy::Source::KubeApi(
                api_connection(args).expect("clap requires --kubeconfig with --source kube-api"),
            ),
        },
        metrics_bind: args.metrics_bind,
        healthz_bind: args.healthz_bind,
        datapath: Settings {
            bpffs,
            cgroup: args.cgroup.clone(),
            uplink: args.uplink.clone().map(|name| Uplink {
                name,
                xdp: args.xdp,
            }),
            service_cidrs: args.service_cidr,
            maglev: MaglevParams {
                size: args.maglev_table_size,
                seed: args.hash_seed,
            },
            node_ip,
            node_ip6,
            pod_interfaces: args.pod_interfaces.clone(),
        },
        dns: None,
    }
}

/// The node's client for the API server, from --kubeconfig.
fn api_connection(args: &Args) -> Option<apiserver::Connection> {
    let credentials = apiserver::ApiCredentials {
        kubeconfig: args.kubeconfig.clone()?,
        bootstrap_kubeconfig: args.bootstrap_kubeconfig.clone(),
    };
    Some(apiserver::Connection::new(
        credentials,
        state_dir(args),
        args.node_name.clone(),
    ))
}

fn state_dir(args: &Args) -> std::path::PathBuf {
    args.state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&args.node_name))
}

fn ingress_config(
    args: &Args,
    node_ip: std::net::Ipv4Addr,
    api: Option<apiserver::Connection>,
) -> ingress::Config {
    ingress::Config {
        etcd: args.etcd.clone(),
        api,
        secret_ttl: Duration::from_secs_f64(args.ingress_secret_ttl.max(0.1)),
        class: args.ingress_class.clone(),
        http: SocketAddr::from((node_ip, args.ingress_http_port)),
        https: SocketAddr::from((node_ip, args.ingress_https_port)),
    }
}

fn kubelet_config(
    args: &Args,
    node_ip: std::net::Ipv4Addr,
    api: apiserver::Connection,
) -> anyhow::Result<kubelet::Config> {
    let pod_cidrs = args.pod_cidr.context("--run-pods needs --pod-cidr")?;
    // Pods reach Services through the gateway whatever --pod-route says
    // (the socket hooks translate connects before any route is looked up;
    // the route keeps what they refuse from taking a default route). The
    // IPv6 range only for pods that have IPv6.
    let mut routes = vec![args.service_cidr.v4.to_string()];
    if pod_cidrs.ipv6.is_some() {
        routes.extend(args.service_cidr.v6.map(|cidr| cidr.to_string()));
    }
    routes.extend(args.pod_routes.iter().cloned());
    Ok(kubelet::Config {
        node_name: args.node_name.clone(),
        node_ip,
        etcd: args.etcd.clone(),
        cgroup: args.cgroup.clone(),
        pod_cidrs,
        pod_bridge: args.pod_bridge.clone(),
        pod_netns_prefix: args.pod_netns_prefix.clone(),
        pod_routes: routes,
        client_ca_file: args
            .client_ca_file
            .clone()
            .context("--run-pods needs --client-ca-file")?,
        kubelet_bind: args
            .kubelet_bind
            .unwrap_or_else(|| SocketAddr::from((node_ip, 10250))),
        state_dir: state_dir(args),
        crashloop_base: Duration::from_secs_f64(args.crashloop_base.max(0.1)),
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain.clone(),
        heartbeat_interval: Duration::from_secs_f64(args.heartbeat_interval.max(0.1)),
        api,
    })
}

fn status(args: StatusArgs) -> anyhow::Result<()> {
    let bpffs = match (args.bpffs, args.node_name) {
        (Some(bpffs), _) => bpffs,
        (None, Some(node_name)) => default_bpffs(&node_name),
        (None, None) => anyhow::bail!("status needs --node-name or --bpffs"),
    };
    print!("{}", proxy::status(&bpffs)?);
    Ok(())
}

fn images(command: ImagesCommand) -> anyhow::Result<()> {
    let out = match &command {
        ImagesCommand::Import { file, store } => {
            kubelet::images::import(&store.state_dir().map_err(anyhow::Error::msg)?, file)?
        }
        ImagesCommand::List { store } => {
            kubelet::images::list(&store.state_dir().map_err(anyhow::Error::msg)?)?
        }
        ImagesCommand::Unpack { reference, store } => {
            kubelet::images::unpack(&store.state_dir().map_err(anyhow::Error::msg)?, reference)?
        }
    };
    print!("{out}");
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
