//! skiff-control: serves the Kubernetes API from etcd.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use control::alloc::{
    CidrListError, DEFAULT_SERVICE_CIDR, LoadBalancerPools, ServiceCidrs, parse_dual_stack,
};
use control::api::{ApiConfig, ServiceNetwork, stored_resources};
use control::controllers::{
    ControllerConfig, DEFAULT_LOCAL_PATH_HELPER_IMAGE, DEFAULT_LOCAL_PATH_ROOT, LeaderElection,
};
use control::etcd_auth_cli::EtcdCommand;
use control::etcd_flags::EtcdFlags;
use control::maintenance::{DefragPolicy, MaintenanceConfig};
use control::secrets_cli::SecretsCommand;
use control::server::{self, ConnectionLimits, JoinToken, RequestLimits, ServerConfig};
use control::snapshot::cli::{DEFAULT_DATA_DIR, ScheduleArgs, SnapshotCommand};
use control::store::encryption::Encryption;
use ipnet::IpNet;
use std::str::FromStr;
use tracing::info;

/// A slim Kubernetes-compatible API server backed by etcd.
///
/// On first start it creates a CA, a serving certificate and an admin
/// client certificate in DATA_DIR/pki, and writes an admin kubeconfig
/// (every start). Clients authenticate with a certificate signed by that CA
/// or a bearer token from --token-file. `skiff-control snapshot save`
/// backs up etcd and the PKI into one archive, `snapshot restore` restores
/// one; the server also saves one on a schedule (--etcd-snapshot-*).
#[derive(Debug, Parser)]
#[command(version, about, long_about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to serve HTTPS on; repeat for several.
    #[arg(
        long = "bind",
        value_name = "ADDR:PORT",
        default_value = "127.0.0.1:6443"
    )]
    binds: Vec<SocketAddr>,

    #[command(flatten)]
    etcd: EtcdFlags,

    /// Join the control plane of the member serving at this URL
    /// (https://ADDR:PORT): fetch its CAs with --token instead of creating
    /// them.
    #[arg(long, value_name = "URL", requires = "token")]
    join: Option<String>,

    /// The join token, `K10<ca-hash>::server:<secret>`, as the first member
    /// wrote it to DATA_DIR/token.
    #[arg(long, value_name = "TOKEN", requires = "join", value_parser = parse_token)]
    token: Option<JoinToken>,

    /// Issue this member's etcd certificate for this address (and the etcd
    /// CA, on the first member) in DATA_DIR/pki/etcd.
    #[arg(long, value_name = "IP")]
    etcd_member_ip: Option<IpAddr>,

    /// `lease`: keep this server's address (the first --bind) leased in
    /// etcd and the API servers' leased addresses in the EndpointSlice of
    /// the `kubernetes` Service, as kube-apiserver does; `none`: do not.
    #[arg(long, value_name = "TYPE", default_value = "none", value_parser = ["lease", "none"])]
    endpoint_reconciler_type: String,

    /// With --endpoint-reconciler-type=lease, also front the API servers
    /// with a NodePort Service kube-system/skiff-apiserver on this port,
    /// the one address clients outside the pods use.
    #[arg(long, value_name = "PORT")]
    apiserver_node_port: Option<u16>,

    /// Prepare the PKI (create it or join, issue the etcd certificate,
    /// write the token) and exit, so that etcd can start with it.
    #[arg(long)]
    pki_only: bool,

    /// Directory for the PKI (and the default kubeconfig).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,

    /// Extra IP address or DNS name for the serving certificate; repeat for
    /// several.
    #[arg(long = "advertise-address", value_name = "ADDRESS")]
    advertise_addresses: Vec<String>,

    /// Server URL written into the kubeconfig [default: https://<first --bind>].
    #[arg(long, value_name = "URL")]
    advertise_url: Option<String>,

    /// Where to write the admin kubeconfig [default: DATA_DIR/admin.kubeconfig].
    #[arg(long, value_name = "FILE")]
    kubeconfig_out: Option<PathBuf>,

    /// Bearer tokens, one `token,user,uid,"group1,group2"` line each (the
    /// format of kube-apiserver's --token-auth-file).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Keep a bootstrap token for joining nodes in FILE (`<id>.<secret>`,
    /// made when missing, readable by the owner only) and its Secret
    /// `kube-system/bootstrap-token-<id>` (no expiration; re-created when
    /// missing). Agents bootstrap their client certificates with it.
    #[arg(long, value_name = "FILE")]
    bootstrap_token_file: Option<PathBuf>,

    /// Where ClusterIPs come from: one CIDR, or two of different families
    /// for dual-stack Services (`10.96.0.0/12,fd00:10:96::/112`); the first
    /// is the primary, whose first address goes to the `kubernetes` Service.
    #[arg(long, value_name = "CIDRS", default_value = DEFAULT_SERVICE_CIDR)]
    service_cluster_ip_range: ServiceCidrs,

    /// Where NodePorts come from, FIRST-LAST.
    #[arg(long, value_name = "RANGE", default_value = "30000-32767", value_parser = parse_port_range)]
    service_node_port_range: RangeInclusive<u16>,

    /// Where LoadBalancer Services get their ingress IPs (written to
    /// status.loadBalancer.ingress): one CIDR, or two of different families
    /// (`172.18.255.0/24,fd00:172:18:255::/112`); a Service gets one per
    /// family of its ipFamilies that has a pool, none without.
    #[arg(long, value_name = "CIDRS")]
    load_balancer_pool: Option<LoadBalancerPools>,

    /// The port node agents serve container logs on (`kubectl logs` is
    /// proxied to http://<node InternalIP>:<port>/containerLogs/...).
    #[arg(long, value_name = "PORT", default_value_t = 10250)]
    kubelet_port: u16,

    /// Run the scheduler and the controllers in this process.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    controllers: bool,

    /// Run them only while holding the Lease kube-system/skiff-control, so
    /// that several instances can run and one acts.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,

    /// How long the leader's lease lasts without renewal.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,

    /// How often the leader renews its lease (and others try to take it).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,

    /// A node whose Lease (and Ready heartbeat) is not renewed for this
    /// long becomes NotReady.
    #[arg(long, value_name = "DURATION", default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: Duration,

    /// How long the pods of a NotReady node stay before they are deleted
    /// and replaced elsewhere (Kubernetes' default toleration of the
    /// unreachable taint).
    #[arg(long, value_name = "DURATION", default_value = "300s", value_parser = parse_duration)]
    pod_eviction_timeout: Duration,

    /// Where nodes registered without spec.podCIDR get one: one CIDR, or
    /// two of different families for dual-stack pods
    /// (`10.244.0.0/16,fd00:10:244::/56`), the primary first.
    #[arg(long, value_name = "CIDRS", default_value = "10.244.0.0/16")]
    cluster_cidr: ClusterCidrs,

    /// The prefix length of each node's IPv4 pod CIDR.
    #[arg(long, value_name = "BITS", default_value_t = 24)]
    node_cidr_mask_size: u8,

    /// The prefix length of each node's IPv6 pod CIDR.
    #[arg(long, value_name = "BITS", default_value_t = 64)]
    node_cidr_mask_size_ipv6: u8,

    /// Where on each node the local-path provisioner (StorageClass
    /// local-path) makes volumes, one directory per PersistentVolume.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_LOCAL_PATH_ROOT, value_parser = parse_absolute)]
    local_path_root: PathBuf,

    /// How often etcd's history is compacted, to the revision seen one
    /// interval earlier (kube-apiserver's flag); 0 never compacts nor
    /// defragments.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    etcd_compaction_interval: Duration,

    /// After a compaction, an etcd member whose database file has at least
    /// this many free bytes, and is at least half free, is defragmented.
    #[arg(long, value_name = "BYTES", default_value_t = DefragPolicy::default().min_free_bytes)]
    etcd_defrag_min_free_bytes: u64,

    /// How often ClusterIPs, NodePorts and load balancer IPs that no
    /// Service holds are looked for (one seen twice is released); 0 never.
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = parse_duration)]
    allocation_repair_interval: Duration,

    /// The image of the pods that delete a local-path volume's directory on
    /// its node (it needs `rm`; no registry is reached, it must be imported).
    #[arg(long, value_name = "IMAGE", default_value = DEFAULT_LOCAL_PATH_HELPER_IMAGE)]
    local_path_helper_image: String,

    /// Reads (GET, LIST) served at once; more get 429 (0: no limit).
    #[arg(long, value_name = "N", default_value_t = RequestLimits::default().max_requests_inflight)]
    max_requests_inflight: usize,

    /// Writes served at once; more get 429 (0: no limit).
    #[arg(long, value_name = "N", default_value_t = RequestLimits::default().max_mutating_requests_inflight)]
    max_mutating_requests_inflight: usize,

    /// Watches, logs, exec, attach and port-forwards one user holds open at
    /// once; more get 429 (0: no limit).
    #[arg(long, value_name = "N", default_value_t = RequestLimits::default().max_long_running_per_user)]
    max_long_running_requests_per_user: usize,

    /// Connections each --bind serves at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value = "4096")]
    max_connections: NonZeroUsize,

    /// A connection that has not completed its TLS handshake by then is
    /// closed.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    tls_handshake_timeout: Duration,

    /// An HTTP/1 connection that has not sent a whole request head by then
    /// (idle keep-alive connections included) is closed, as with
    /// kube-apiserver's 32 s `ReadHeaderTimeout`.
    #[arg(long, value_name = "DURATION", default_value = "32s", value_parser = parse_duration)]
    header_read_timeout: Duration,

    /// Encrypt the resources it names at rest: an
    /// apiserver.config.k8s.io/v1 EncryptionConfiguration (YAML or JSON)
    /// with aesgcm, secretbox and identity providers, as kube-apiserver's
    /// flag.
    #[arg(long, value_name = "FILE")]
    encryption_provider_config: Option<PathBuf>,

    #[command(flatten)]
    snapshots: ScheduleArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Backups: an etcd snapshot and the PKI in one archive.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Encryption at rest: rewrite stored values with the current key.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// etcd's own users and roles.
    #[command(subcommand)]
    Etcd(EtcdCommand),
}

fn parse_token(text: &str) -> Result<JoinToken, String> {
    JoinToken::parse(text).map_err(|error| error.to_string())
}

/// `40s`, `500ms`, `2m`, `1h`, or `0`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit (s, ms, m, h)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|error| format!("{text:?}: {error}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        "h" => Ok(Duration::from_secs(number * 3600)),
        _ => Err(format!("{text:?}: unknown unit {unit:?} (s, ms, m, h)")),
    }
}

/// A period, `None` for 0 (off).
fn nonzero(period: Duration) -> Option<Duration> {
    (!period.is_zero()).then_some(period)
}

/// An absolute path: the nodes resolve it, not this process's directory.
fn parse_absolute(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(format!("{text:?} is not an absolute path"))
    }
}

/// `30000-32767`: a non-empty range of ports.
/// `--cluster-cidr`: one range per family.
#[derive(Debug, Clone)]
struct ClusterCidrs(Vec<IpNet>);

impl FromStr for ClusterCidrs {
    type Err = CidrListError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_dual_stack("--cluster-cidr", text).map(Self)
    }
}

fn parse_port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let (first, last) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not FIRST-LAST"))?;
    let parse = |port: &str| {
        port.trim()
            .parse::<u16>()
            .map_err(|error| format!("{port:?}: {error}"))
    };
    let range = parse(first)?..=parse(last)?;
    if range.is_empty() {
        return Err(format!("{text:?} is empty"));
    }
    Ok(range)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    match args.command {
        Some(Command::Snapshot(command)) => return control::snapshot::cli::run(command).await,
        Some(Command::Secrets(command)) => return control::secrets_cli::run(command).await,
        Some(Command::Etcd(command)) => return control::etcd_auth_cli::run(command).await,
        None => {}
    }
    let encryption = match &args.encryption_provider_config {
        Some(path) => Encryption::load(path, &stored_resources())?,
        None => Encryption::default(),
    };
    let controllers = args.controllers.then(|| ControllerConfig {
        leader_election: args.leader_elect.then(|| LeaderElection {
            lease_duration: args.leader_elect_lease_duration,
            retry_period: args.leader_elect_retry_period,
            ..LeaderElection::default()
        }),
        node_monitor_grace_period: args.node_monitor_grace_period,
        pod_eviction_timeout: args.pod_eviction_timeout,
        cluster_cidrs: args.cluster_cidr.0,
        node_cidr_mask_size: args.node_cidr_mask_size,
        node_cidr_mask_size_ipv6: args.node_cidr_mask_size_ipv6,
        local_path_root: args.local_path_root,
        local_path_helper_image: args.local_path_helper_image,
        ..ControllerConfig::default()
    });
    let etcd_tls = args.etcd.tls();
    let snapshots = args
        .snapshots
        .schedule(&args.data_dir, &args.etcd.etcd, etcd_tls.as_ref());
    let config = ServerConfig {
        binds: args.binds,
        etcd: args.etcd.etcd,
        etcd_tls,
        data_dir: args.data_dir,
        join: args.join.zip(args.token),
        etcd_member_ip: args.etcd_member_ip,
        endpoint_leases: args.endpoint_reconciler_type == "lease",
        apiserver_node_port: args.apiserver_node_port,
        advertise_addresses: args.advertise_addresses,
        advertise_url: args.advertise_url,
        kubeconfig_out: args.kubeconfig_out,
        token_file: args.token_file,
        bootstrap_token_file: args.bootstrap_token_file,
        api: ApiConfig {
            network: ServiceNetwork {
                cluster_ip_ranges: args.service_cluster_ip_range,
                node_port_range: args.service_node_port_range,
                load_balancer_pools: args.load_balancer_pool.unwrap_or_default(),
            },
            kubelet_port: args.kubelet_port,
            ..ApiConfig::default()
        },
        controllers,
        maintenance: MaintenanceConfig {
            compaction_interval: nonzero(args.etcd_compaction_interval),
            defrag: DefragPolicy {
                min_free_bytes: args.etcd_defrag_min_free_bytes,
                ..DefragPolicy::default()
            },
            repair_interval: nonzero(args.allocation_repair_interval),
        },
        connections: ConnectionLimits {
            tls_handshake_timeout: args.tls_handshake_timeout,
            header_read_timeout: args.header_read_timeout,
            max_connections: args.max_connections.get(),
        },
        requests: RequestLimits {
            max_requests_inflight: args.max_requests_inflight,
            max_mutating_requests_inflight: args.max_mutating_requests_inflight,
            max_long_running_per_user: args.max_long_running_requests_per_user,
        },
        encryption: Arc::new(encryption),
    };
    if args.pki_only {
        server::prepare_pki(&config)
            .await
            .context("preparing the PKI")?;
        info!(token = %server::token_path(&config.data_dir).display(), "PKI ready");
        return Ok(());
    }
    let running = server::start(config)
        .await
        .context("starting skiff-control")?;
    info!(kubeconfig = %running.kubeconfig.display(), "ready");
    if let Some(snapshots) = snapshots {
        tokio::spawn(control::snapshot::schedule::run(snapshots));
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    info!("shutting down");
    Ok(())
}
