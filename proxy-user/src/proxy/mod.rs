//! The service proxy: keeps this node's eBPF datapath (`datapath`) equal to
//! what the Services and EndpointSlices in etcd ask for (`cluster`), through
//! the sync loop (`sync`), and serves its metrics and health (`http`).
pub mod cluster;
pub mod datapath;
mod health_check;
mod http;
pub mod node_address;
mod orphans;
pub mod outlier;
pub mod policy;
mod sync;
mod telemetry;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
};

use anyhow::Context as _;
use tokio::{sync::mpsc, task::JoinHandle};
use tracing::error;

use self::{
    cluster::{etcd_watch, shared::SharedCluster},
    datapath::{ConnectOutcomes, Datapath, Observer, Settings, render_status},
    outlier::EventReporter,
    sync::Syncer,
    telemetry::Telemetry,
};

/// What the proxy is started with (from the agent's flags).
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// Where /metrics and /healthz are served.
    pub metrics_bind: SocketAddr,
    pub datapath: Settings,
    /// This node's DNS server, when it serves one.
    pub dns: Option<crate::dns::LocalDns>,
}

/// The proxy between start-up and its sync loop: the datapath is set up,
/// its programs not hooked yet.
pub struct Proxy {
    node_name: String,
    /// Where this node serves NodePorts, if it does.
    node_ip: Option<Ipv4Addr>,
    etcd: Vec<String>,
    datapath: Datapath,
    telemetry: Telemetry,
    dns: Option<crate::dns::LocalDns>,
    cluster: SharedCluster,
}

impl Proxy {
    /// Loads the datapath (adopting what its pinned maps hold) and serves
    /// /metrics and /healthz, in the background.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        let Config {
            node_name,
            etcd,
            metrics_bind,
            datapath: settings,
            dns,
        } = config;
        let bpffs = settings.bpffs.clone();
        let cgroup = settings.cgroup.clone();
        let node_ip = settings.node_ip;
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
        Ok(Self {
            node_name,
            node_ip,
            etcd,
            datapath,
            telemetry,
            dns,
            cluster: SharedCluster::default(),
        })
    }

    /// The cluster cache the sync loop keeps, for the agent's other readers.
    pub fn cluster(&self) -> SharedCluster {
        self.cluster.clone()
    }

    /// Starts watching etcd and keeping the datapath in sync with it,
    /// ejecting failing backends of the Services that ask for it (with
    /// Events on them through `api`, when there is one). The task ends when
    /// the watch does, or fails when the datapath cannot be hooked.
    pub fn sync(
        mut self,
        api: Option<crate::apiserver::Connection>,
    ) -> JoinHandle<anyhow::Result<()>> {
        let (events_tx, events_rx) = mpsc::channel(64);
        tokio::spawn(etcd_watch::run(self.etcd, events_tx));
        let (outcomes_tx, outcomes_rx) = mpsc::channel(64);
        if let Some(outcomes) = self.datapath.take_connect_outcomes() {
            tokio::spawn(read_connect_outcomes(outcomes, outcomes_tx));
        }
        let reporter = EventReporter::new(api, self.node_name.clone());
        let syncer = Syncer::new(
            self.node_name,
            self.node_ip,
            self.datapath,
            self.telemetry,
            self.dns,
            self.cluster,
            reporter,
        );
        tokio::spawn(syncer.run(events_rx, outcomes_rx))
    }
}

/// Hands the `sock_ops` program's reports to the sync loop, in batches of
/// whatever the ring buffer held.
async fn read_connect_outcomes(
    mut outcomes: ConnectOutcomes,
    sync: mpsc::Sender<Vec<proxy_common::ConnectOutcome>>,
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

/// What a node's pinned maps hold, rendered for `skiff-agent status`
/// (agent running or not).
pub fn status(bpffs: &Path) -> anyhow::Result<String> {
    let observer = Observer::open(bpffs)
        .with_context(|| format!("reading the maps pinned under {}", bpffs.display()))?;
    Ok(render_status(&observer.frontends()?, &observer.drops()?))
}
