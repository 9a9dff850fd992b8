//! The agent's command line: one flat set of flags for a run (the service
//! proxy's and, with `--run-pods`, the kubelet's), and the `status`
//! subcommand.
use std::{net::SocketAddr, path::PathBuf};

use clap::{
    ArgMatches, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, error::ErrorKind,
    parser::ValueSource,
};

use crate::{
    kubelet::pods::{ipam::PodCidrs, oci::monitor::MonitorArgs},
    proxy::datapath::{MaglevSize, ServiceCidrs, XdpChoice},
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
/// `skiff-agent images` imports, lists and unpacks the node's images.
#[derive(Debug, Parser)]
#[command(
    name = "skiff-agent",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Option<Args>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the frontends, backends and counters programmed on a node, read
    /// from its pinned maps (like bpftool, but readable).
    Status(StatusArgs),
    /// The node's image store: images imported from archives (no registry
    /// needed), kept as an OCI image layout under <state-dir>/images.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Runs one pod container with runc and records its exit code (the
    /// agent starts it; not for people).
    #[command(name = "container-monitor", hide = true)]
    ContainerMonitor(MonitorArgs),
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Import the images of an OCI archive (a tar of an OCI image layout,
    /// as skopeo or buildah write) or a docker archive (`docker save`),
    /// plain or gzipped. Every blob is checked against its digest.
    Import {
        /// The archive file.
        file: PathBuf,
        #[command(flatten)]
        store: ImageStoreArgs,
    },
    /// List the stored images: reference, image ID (config digest), size.
    List {
        #[command(flatten)]
        store: ImageStoreArgs,
    },
    /// Extract an image's layers (once) and print their directories, bottom
    /// first.
    Unpack {
        /// A reference (`redis`, `busybox:1.35`) or the sha256: digest of
        /// the image's config or manifest.
        reference: String,
        #[command(flatten)]
        store: ImageStoreArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ImageStoreArgs {
    /// The agent's state directory; the store is its images/ directory.
    /// [default: /run/skiff/agent/<node-name>]
    #[arg(long, env = "SKIFF_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// The node whose default state directory to use.
    #[arg(long, env = "SKIFF_NODE_NAME", value_parser = node_name)]
    pub node_name: Option<String>,
}

impl ImageStoreArgs {
    pub fn state_dir(&self) -> Result<PathBuf, &'static str> {
        match (&self.state_dir, &self.node_name) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, Some(node_name)) => Ok(default_state_dir(node_name)),
            (None, None) => Err("images needs --state-dir or --node-name"),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The node whose maps to read, under /sys/fs/bpf/skiff/<node-name>.
    #[arg(long, env = "SKIFF_NODE_NAME", value_parser = node_name)]
    pub node_name: Option<String>,

    /// The pin directory to read instead of the node's default.
    #[arg(long, env = "SKIFF_BPFFS")]
    pub bpffs: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// This node's name; it also names the default pin directory.
    #[arg(long, env = "SKIFF_NODE_NAME", value_parser = node_name)]
    pub node_name: String,

    /// Where the service proxy reads Services, EndpointSlices and this
    /// node's Node: `etcd` straight from --etcd, or `kube-api` through the
    /// API server of --kubeconfig, as kube-proxy does (a credential with
    /// `system:node-proxier`'s rights is enough, e.g. `system:kube-proxy`).
    #[arg(long, env = "SKIFF_SOURCE", value_enum, default_value = "etcd")]
    pub source: Source,

    /// etcd client URLs, comma-separated or given more than once.
    #[arg(
        long,
        env = "SKIFF_ETCD",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd: Vec<String>,

    /// CA of an etcd that serves TLS (`https://` --etcd URLs), with
    /// --etcd-certfile and --etcd-keyfile: the client identity of every
    /// etcd connection the agent makes.
    #[arg(long, value_name = "FILE", requires_all = ["etcd_certfile", "etcd_keyfile"])]
    pub etcd_cafile: Option<PathBuf>,

    /// Client certificate towards etcd.
    #[arg(long, value_name = "FILE", requires = "etcd_cafile")]
    pub etcd_certfile: Option<PathBuf>,

    /// Client key towards etcd.
    #[arg(long, value_name = "FILE", requires = "etcd_cafile")]
    pub etcd_keyfile: Option<PathBuf>,

    /// cgroup v2 directory whose processes get service load balancing. On a
    /// real node this is the cgroup v2 root (e.g. /sys/fs/cgroup); it has no
    /// default so that nothing is ever attached somewhere by accident.
    #[arg(long, env = "SKIFF_CGROUP")]
    pub cgroup: PathBuf,

    /// The cluster's service CIDRs: IPv4, then optionally IPv6
    /// (`10.96.0.0/12,fd00:10:96::/112`). A connect to an address in one
    /// that no Service has is refused at once instead of hanging.
    #[arg(long, env = "SKIFF_SERVICE_CIDR", default_value = "10.96.0.0/12")]
    pub service_cidr: ServiceCidrs,

    /// Directory on a bpf filesystem where the maps and program links are
    /// pinned, and found again after a restart.
    /// [default: /sys/fs/bpf/skiff/<node-name>]
    #[arg(long, env = "SKIFF_BPFFS")]
    pub bpffs: Option<PathBuf>,

    /// The node's network interface that outside traffic arrives on. Given,
    /// the per-packet programs attach to its TCX ingress and egress and its
    /// XDP hook; never defaulted, so nothing attaches to an interface by
    /// accident.
    #[arg(long, env = "SKIFF_UPLINK")]
    pub uplink: Option<String>,

    /// An interface facing this node's pods (e.g. the pod bridge), given
    /// more than once for several. Its ingress gets the per-packet NAT too,
    /// so pod traffic the socket hooks did not see (a process outside
    /// --cgroup) still reaches Services.
    #[arg(
        long = "pod-interface",
        env = "SKIFF_POD_INTERFACES",
        value_delimiter = ','
    )]
    pub pod_interfaces: Vec<String>,

    /// The uplink's XDP fast path: `auto` tries native (driver) mode and
    /// falls back to generic, then to none; `native` and `generic` insist
    /// on their mode; `off` leaves all per-packet work to TCX. XDP needs
    /// frames that carry complete checksums, as a NIC delivers them: it
    /// cannot finish an unfinished checksum offload, so on a veth uplink
    /// the peer must have transmit checksum offload off (`ethtool -K PEER
    /// tx off`), or TCP segments it rewrites arrive with bad checksums.
    /// Packets through remote backends go back out of the uplink (XDP_TX);
    /// a veth uplink's peer takes them promptly only while it runs an XDP
    /// program itself (a pass-only one will do).
    #[arg(long, env = "SKIFF_XDP", value_enum, default_value = "auto")]
    pub xdp: XdpChoice,

    /// Entries of each external frontend's Maglev table: a prime up to
    /// 16381. Larger tables spread flows more evenly over many backends.
    /// Every node of a cluster must use the same size.
    #[arg(long, env = "SKIFF_MAGLEV_TABLE_SIZE", default_value_t = MaglevSize::DEFAULT)]
    pub maglev_table_size: MaglevSize,

    /// Seed of the per-packet flow hash and the Maglev tables. Every node of
    /// a cluster must use the same seed, so that a flow picks the same
    /// backend whichever node it enters.
    #[arg(long, env = "SKIFF_HASH_SEED", default_value_t = 0x5eed_0001)]
    pub hash_seed: u32,

    /// The address NodePorts are served on. [default: the uplink's IPv4
    /// address]
    #[arg(long, env = "SKIFF_NODE_IP")]
    pub node_ip: Option<std::net::Ipv4Addr>,

    /// The IPv6 address NodePorts are served on, and IPv6 flows to remote
    /// backends come from. [default: the uplink's first global IPv6
    /// address, if it has one]
    #[arg(long, env = "SKIFF_NODE_IP6")]
    pub node_ip6: Option<std::net::Ipv6Addr>,

    /// Serve the Ingresses of --ingress-class on the node address
    /// (--node-ip, else the uplink's), over HTTP and HTTPS, proxying to
    /// their Services' ready endpoints. `--ingress=false` turns it off.
    #[arg(long, env = "SKIFF_INGRESS", default_value_t = true, action = clap::ArgAction::Set)]
    pub ingress: bool,

    /// The IngressClass this node's Ingress proxy serves (and, when it is
    /// the default class, the Ingresses that name none).
    #[arg(long, env = "SKIFF_INGRESS_CLASS", default_value = "skiff")]
    pub ingress_class: String,

    /// The node address's port for Ingress HTTP.
    #[arg(long, env = "SKIFF_INGRESS_HTTP_PORT", default_value_t = 80)]
    pub ingress_http_port: u16,

    /// The node address's port for Ingress HTTPS.
    #[arg(long, env = "SKIFF_INGRESS_HTTPS_PORT", default_value_t = 443)]
    pub ingress_https_port: u16,

    /// Seconds between reads of the TLS Secrets the Ingresses name (read
    /// through the API server, as the kubelet's Secret manager, whose TTL
    /// this is): a renewed certificate is served within this time.
    #[arg(
        long,
        env = "SKIFF_INGRESS_SECRET_TTL",
        default_value_t = 60.0,
        value_name = "SECONDS"
    )]
    pub ingress_secret_ttl: f64,

    /// Where to serve /metrics (Prometheus) and /healthz.
    #[arg(long, env = "SKIFF_METRICS_BIND", default_value = "127.0.0.1:10249")]
    pub metrics_bind: SocketAddr,

    /// Where to serve kube-proxy's health port: /healthz (503 until the
    /// datapath is in sync, and while this node's Node is being deleted or
    /// tainted ToBeDeletedByClusterAutoscaler) and /livez.
    #[arg(long, env = "SKIFF_HEALTHZ_BIND", default_value = "0.0.0.0:10256")]
    pub healthz_bind: SocketAddr,

    // Running pods (the node's kubelet); off by default, the agent then only proxies.
    // Fields of `Args` itself, not a flattened struct: `Cli` tells a run
    // from a subcommand by `Args`' group, which a nested one would hide.
    /// Register this node (Node object and Lease, refreshed every 10 s) and
    /// run the pods bound to it: their containers with runc from the
    /// node's image store, each pod in a netns of its own with a veth on
    /// --pod-bridge and an address from --pod-cidr, in cgroups below
    /// --cgroup. Needs --pod-cidr, the node's address
    /// (--node-ip or --uplink) and --kubeconfig: everything the kubelet
    /// writes goes through the API server as the node.
    #[arg(long, env = "SKIFF_RUN_PODS", requires_all = ["pod_cidr", "client_ca_file", "kubeconfig"])]
    pub run_pods: bool,

    /// The cluster CA (skiff-control's `<data-dir>/pki/ca.crt`): the kubelet
    /// API serves only the API server's client certificate signed by it.
    /// Until the file exists the kubelet API waits for it.
    #[arg(long, env = "SKIFF_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// The node's own kubeconfig, a client certificate for
    /// `system:node:<node-name>` (the kubelet's --kubeconfig): the kubelet
    /// writes its Node, Lease, pods' status and Events and reads the
    /// Secrets, ConfigMaps and claims its pods name through the API server
    /// with it, and the Ingress proxy reads its TLS Secrets. Made with
    /// --bootstrap-kubeconfig when missing, and renewed with it when its
    /// certificate has a fifth of its life left; the key and certificate go
    /// to <state-dir>/pki.
    /// With `--source kube-api`, the service proxy watches the cluster
    /// with it too.
    #[arg(
        long,
        env = "SKIFF_KUBECONFIG",
        value_name = "FILE",
        required_if_eq("source", "kube-api")
    )]
    pub kubeconfig: Option<PathBuf>,

    /// A kubeconfig with a bootstrap token (the kubelet's
    /// --bootstrap-kubeconfig): it asks the API server for the node's
    /// client certificate.
    #[arg(
        long,
        env = "SKIFF_BOOTSTRAP_KUBECONFIG",
        value_name = "FILE",
        requires = "kubeconfig"
    )]
    pub bootstrap_kubeconfig: Option<PathBuf>,

    /// This node's pod CIDR (written to the Node's spec.podCIDR); its first
    /// address is the pods' gateway and must be --pod-bridge's. A second,
    /// IPv6 one (`10.244.1.0/24,fd00:10:244:1::/64`) gives every pod an IPv6
    /// address too, its gateway the bridge's first IPv6 address.
    #[arg(long, env = "SKIFF_POD_CIDR", value_name = "IPV4[,IPV6]")]
    pub pod_cidr: Option<PodCidrs>,

    /// The existing bridge the pods' veths join. The agent never creates
    /// bridges nor touches an uplink.
    #[arg(long, env = "SKIFF_POD_BRIDGE", default_value = "cbr0")]
    pub pod_bridge: String,

    /// Start of the names of the pods' netns (`<prefix>-<namespace>.<name>`);
    /// it must start with `skiff` so skiff's clean-up finds them.
    #[arg(long, env = "SKIFF_POD_NETNS_PREFIX", default_value = "skiff-pod", value_parser = netns_prefix)]
    pub pod_netns_prefix: String,

    /// A destination pods route via the gateway, given more than once for
    /// several. Pods always reach their pod CIDR and the service CIDR;
    /// nothing else unless given here (a real node may want 0.0.0.0/0).
    #[arg(long = "pod-route", env = "SKIFF_POD_ROUTES", value_delimiter = ',')]
    pub pod_routes: Vec<String>,

    /// Where the kubelet API (HTTPS: `/containerLogs`, `/exec`, for the API
    /// server's `kubectl logs` and `exec`) is served. [default: <node-ip>:10250]
    #[arg(long, env = "SKIFF_KUBELET_BIND")]
    pub kubelet_bind: Option<SocketAddr>,

    /// Where pod address allocations, container logs and the node's image
    /// store (images/) are kept. [default: /run/skiff/agent/<node-name>]
    #[arg(long, env = "SKIFF_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// The cluster DNS server's address (`kube-system/kube-dns`'s
    /// ClusterIP, the service range's tenth address), written as the
    /// nameserver of every ClusterFirst pod's /etc/resolv.conf. Without it
    /// pods get no nameserver.
    #[arg(long, env = "SKIFF_CLUSTER_DNS")]
    pub cluster_dns: Option<std::net::Ipv4Addr>,

    /// The cluster's DNS domain: cluster DNS answers for it, and pods
    /// search `<namespace>.svc.<domain>`, `svc.<domain>` and `<domain>`.
    #[arg(long, env = "SKIFF_CLUSTER_DOMAIN", default_value = "cluster.local", value_parser = cluster_domain)]
    pub cluster_domain: String,

    /// Serve cluster DNS on the node address, port 53 (UDP and TCP), and
    /// send this node's queries to `kube-system/kube-dns` there.
    /// `--dns=false` turns it off.
    #[arg(long, env = "SKIFF_DNS", default_value_t = true, action = clap::ArgAction::Set)]
    pub dns: bool,

    /// An upstream DNS server (`address` or `address:port`) asked about
    /// names outside the cluster domain, given more than once for several
    /// (tried in order). Without any, such names are refused: nothing is
    /// ever sent off the node.
    #[arg(long = "dns-upstream", env = "SKIFF_DNS_UPSTREAMS", value_delimiter = ',', value_parser = dns_upstream)]
    pub dns_upstreams: Vec<std::net::SocketAddr>,

    /// A directory of image archives (OCI or docker, `*.tar`), each imported
    /// into the node's image store at start, as k3s imports its air-gapped
    /// images. Importing an image already there changes nothing.
    #[arg(long, env = "SKIFF_IMAGE_DIR", requires = "run_pods")]
    pub image_dir: Option<PathBuf>,

    /// First CrashLoopBackOff delay in seconds (doubling up to 5 min). Tests
    /// shorten it; Kubernetes' is 10.
    #[arg(long, hide = true, default_value_t = 10.0)]
    pub crashloop_base: f64,

    /// Seconds between Node and Lease updates. Tests shorten it; the
    /// kubelet's is 10.
    #[arg(long, hide = true, default_value_t = 10.0)]
    pub heartbeat_interval: f64,
}

/// Where the service proxy reads the cluster from (`--source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    Etcd,
    KubeApi,
}

/// The command line, with what clap's declarations cannot say: a
/// `--source kube-api` agent touches no etcd, so it takes no --etcd, and
/// neither the kubelet nor the Ingress proxy (which read etcd). Exits with
/// a one-line message on a bad combination.
pub fn parse() -> Cli {
    let mut command = Cli::command();
    let matches = command.get_matches_mut();
    if let Some(conflict) = kube_api_conflict(&matches) {
        command
            .error(
                ErrorKind::ArgumentConflict,
                format!("{conflict} cannot be used with --source kube-api"),
            )
            .exit();
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// The flag a `--source kube-api` run was given that needs etcd, if any.
fn kube_api_conflict(matches: &ArgMatches) -> Option<&'static str> {
    let kube_api = matches.try_get_one::<Source>("source").ok().flatten() == Some(&Source::KubeApi);
    let given = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    let ingress = matches.try_get_one::<bool>("ingress").ok().flatten() == Some(&true);
    match () {
        _ if !kube_api => None,
        _ if given("etcd") => Some("--etcd"),
        _ if given("run_pods") => Some("--run-pods (the kubelet reads its pods from etcd)"),
        _ if ingress => Some("--ingress (it reads Ingresses from etcd; pass --ingress=false)"),
        _ => None,
    }
}

fn cluster_domain(domain: &str) -> Result<String, String> {
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    match valid {
        true => Ok(domain.to_owned()),
        false => Err("must be a DNS name of lower-case labels, like cluster.local".into()),
    }
}

/// `address` (port 53) or `address:port`.
fn dns_upstream(text: &str) -> Result<std::net::SocketAddr, String> {
    text.parse::<std::net::SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, 53))
        })
        .map_err(|_| "must be an IP address, optionally with :port".into())
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

pub fn default_state_dir(node_name: &str) -> PathBuf {
    PathBuf::from("/run/skiff/agent").join(node_name)
}

pub fn default_bpffs(node_name: &str) -> PathBuf {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kube_api_conflict` says of a run with `flags`.
    fn conflict(flags: &[&str]) -> Option<&'static str> {
        let base = [
            "skiff-agent",
            "--node-name",
            "n1",
            "--cgroup",
            "/sys/fs/cgroup/skiff",
        ];
        let matches = Cli::command()
            .try_get_matches_from(base.iter().chain(flags))
            .expect("the flags parse");
        kube_api_conflict(&matches)
    }

    #[test]
    fn a_kube_api_run_takes_nothing_that_reads_etcd() {
        let kube_api = ["--source", "kube-api", "--kubeconfig", "/k"];
        assert_eq!(
            conflict(&kube_api),
            Some("--ingress (it reads Ingresses from etcd; pass --ingress=false)")
        );
        let quiet = [&kube_api[..], &["--ingress=false"]].concat();
        assert_eq!(conflict(&quiet), None);
        assert_eq!(
            conflict(&[&quiet[..], &["--etcd", "http://10.0.0.1:2379"]].concat()),
            Some("--etcd")
        );
        assert_eq!(conflict(&["--etcd", "http://10.0.0.1:2379"]), None);
        assert!(
            Cli::command()
                .try_get_matches_from([
                    "skiff-agent",
                    "--node-name",
                    "n1",
                    "--cgroup",
                    "/c",
                    "--source",
                    "kube-api"
                ])
                .is_err(),
            "--source kube-api needs --kubeconfig"
        );
    }
}
