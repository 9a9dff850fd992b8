//! The service proxy: keeps this node's eBPF datapath (`datapath`) equal to
//! what the Services and EndpointSlices in etcd or the API server ask for
//! (`cluster`), through the sync loop (`sync`), and serves its metrics
//! (`http`) and kube-proxy's health port (`healthz`), which also tells
//! whether the node still takes traffic (`node_eligibility`).
pub mod cluster;
pub mod datapath;
mod health_check;
mod healthz;
mod http;
pub mod node_address;
mod node_eligibility;
mod orphans;
pub mod outlier;
pub mod policy;
mod sync;
mod telemetry;

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use anyhow::Context as _;
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{error, warn};

use self::{
    cluster::{etcd_watch, kube_watch, shared::SharedCluster},
    datapath::{
        ConnectOutcomes, Datapath, ObservedConnect, Observer, PodPorts, Settings, render_status,
    },
    node_eligibility::NodeEligibility,
    outlier::EventReporter,
    sync::{Published, Syncer},
    telemetry::Telemetry,
};

/// What the proxy is started with (from the agent's flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    /// Where Services, EndpointSlices and the node's Node are read.
    pub source: Source,
    /// Where /metrics and /healthz are served.
    pub metrics_bind: SocketAddr,
    /// Where kube-proxy's health port (/healthz, /livez) is served.
    pub healthz_bind: SocketAddr,
    pub datapath: Settings,
    /// This node's DNS server, when it serves one.
    pub dns: Option<crate::dns::LocalDns>,
}

/// Where the proxy reads the cluster (`--source`).
#[derive(Debug, Clone)]
pub enum Source {
    /// etcd, at these client URLs.
    Etcd(Vec<String>),
    /// The API server, with this client.
    KubeApi(crate::apiserver::Connection),
}

/// The proxy between start-up and its sync loop: the datapath is set up,
/// its programs not hooked yet.
pub struct Proxy {
    node_name: String,
    /// Where this node serves NodePorts, if it does.
    node_ip: Option<Ipv4Addr>,
    node_ip6: Option<Ipv6Addr>,
    source: Source,
    datapath: Datapath,
    telemetry: Telemetry,
    eligibility: NodeEligibility,
    dns: Option<crate::dns::LocalDns>,
    cluster: SharedCluster,
}

impl Proxy {
    /// Loads the datapath (adopting what its pinned maps hold) and serves
    /// /metrics and /healthz, in the background.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let Config {
            node_name,
            source,
            metrics_bind,
            healthz_bind,
            datapath: settings,
            dns,
        } = config;
        let bpffs = settings.bpffs.clone();
        let cgroup = settings.cgroup.clone();
        let node_ip = settings.node_ip;
        let node_ip6 = settings.node_ip6;
        let datapath = Datapath::open(settings).with_context(|| {
            format!(
                "setting up the datapath (pins in {}, hooks on cgroup {})",
                bpffs.display(),
                cgroup.display()
            )
        })?;

        let observer = Observer::open(&bpffs).context("opening the pinned maps for /metrics")?;
        let listener = tokio::net::TcpListener::bind(metrics_bind)
            .await
            .with_context(|| format!("serving /metrics and /healthz on {metrics_bind}"))?;
        let telemetry = Telemetry::default();
        tokio::spawn(http::serve(listener, telemetry.clone(), observer));
        let listener = tokio::net::TcpListener::bind(healthz_bind)
            .await
            .with_context(|| format!("serving /healthz and /livez on {healthz_bind}"))?;
        let eligibility = NodeEligibility::default();
        tokio::spawn(healthz::serve(
            listener,
            telemetry.clone(),
            eligibility.clone(),
        ));
        Ok(Self {
            node_name,
            node_ip,
            node_ip6,
            source,
            datapath,
            telemetry,
            eligibility,
            dns,
            cluster: SharedCluster::default(),
        })
    }

    /// The cluster cache the sync loop keeps, for the agent's other readers.
    pub fn cluster(&self) -> SharedCluster {
        self.cluster.clone()
    }

    /// Starts watching the source (the cluster and the node's Node) and
    /// keeping the datapath in sync with it, ejecting
    /// failing backends of the Services that ask for it (with Events on
    /// them through `api`, or else the source's API server connection, when
    /// there is one). The task ends when the watch does, or fails when the
    /// datapath cannot be hooked.
    pub fn sync(
        mut self,
        api: Option<crate::apiserver::Connection>,
    ) -> JoinHandle<anyhow::Result<()>> {
        let (events_tx, events_rx) = mpsc::channel(64);
        let api = api.or_else(|| match &self.source {
            Source::KubeApi(connection) => Some(connection.clone()),
            Source::Etcd(_) => None,
        });
        let node_name = self.node_name.clone();
        match self.source {
            Source::Etcd(endpoints) => {
                tokio::spawn(
                    async move { etcd_watch::run(endpoints, &node_name, events_tx).await },
                );
            }
            Source::KubeApi(connection) => {
                tokio::spawn(async move {
                    let client = connection.client().await;
                    kube_watch::run(client, &node_name, events_tx).await
                });
            }
        }
        let (outcomes_tx, outcomes_rx) = mpsc::channel(64);
        if let Some(outcomes) = self.datapath.take_connect_outcomes() {
            tokio::spawn(read_connect_outcomes(outcomes, outcomes_tx));
        }
        if let Some(ports) = self.datapath.take_pod_ports() {
            tokio::spawn(keep_pod_ports(ports));
        }
        let reporter = EventReporter::new(api, self.node_name.clone());
        let syncer = Syncer::new(
            self.node_name,
            (self.node_ip, self.node_ip6),
            self.datapath,
            self.dns,
            Published {
                telemetry: self.telemetry,
                cluster: self.cluster,
                eligibility: self.eligibility,
            },
            reporter,
        );
        tokio::spawn(syncer.run(events_rx, outcomes_rx))
    }
}

/// Hands the `sock_ops` program's reports to the sync loop, in batches of
/// whatever the ring buffer held.
async fn read_connect_outcomes(
    mut outcomes: ConnectOutcomes,
    sync: mpsc::Sender<Vec<ObservedConnect>>,
) {
    loop {
        let mut batch = Vec::new();
        if let Err(error) = outcomes.read(&mut batch).await {
            error!(%error, "reading connect outcomes failed; outlier detection stops");
            return;
        }
        if sync.send(batch).await.is_err() {
            return;
        }
    }
}

/// How often the pods' ports are looked for: a new pod's first packets
/// take the stack's path until then.
const POD_PORTS_REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps `skiff_pod_ports` following the node's pods.
async fn keep_pod_ports(mut ports: PodPorts) {
    let mut ticks = tokio::time::interval(POD_PORTS_REFRESH);
    loop {
        ticks.tick().await;
        let refreshed = tokio::task::spawn_blocking(move || {
            let result = ports.refresh();
            (ports, result)
        })
        .await;
        match refreshed {
            Ok((kept, result)) => {
                ports = kept;
                if let Err(error) = result {
                    warn!(%error, "looking for the pods' ports failed; retrying");
                }
            }
            Err(error) => {
                error!(%error, "the pod port refresh panicked; XDP redirects stop following pods");
                return;
            }
        }
    }
}

/// What a node's pinned maps hold, rendered for `skiff-agent status`
/// (agent running or not).
pub fn status(bpffs: &Path) -> anyhow::Result<String> {
    let observer = Observer::open(bpffs)
        .with_context(|| format!("reading the maps pinned under {}", bpffs.display()))?;
    Ok(render_status(
        &observer.frontends()?,
        &observer.drops()?,
        observer.has_ipv6_maps(),
    ))
}
