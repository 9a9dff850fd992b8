//! The controllers of skiff-control, and the loop that runs them (and the
//! scheduler) while this instance holds the leader lease.
//!
//! Every controller is level-triggered: on any change to the cached
//! objects (and at least every `resync`) it compares the whole cluster
//! with what it wants and writes the difference through the API's own
//! code paths. After writing it waits until the cache shows its writes, so
//! a pass never acts twice on the same state.

mod cache;
mod client;
mod deployment;
mod endpoints;
mod endpointslice;
pub mod events;
mod gc;
mod kind;
mod leader;
pub mod meta;
mod namespace;
mod nodelifecycle;
mod podcidr;
mod replicaset;
mod services;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::alloc::Ipv4Cidr;
use crate::api::Api;
use crate::store::{Store, StoreError};
pub use cache::Cache;
pub use client::{Client, ClientError};
pub use kind::Kind;
pub use leader::LeaderElection;

/// Tunables of the controllers.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Take the lease `kube-system/skiff-control` before acting, so that
    /// only one of several instances does.
    pub leader_election: Option<LeaderElection>,
    /// Each controller looks at everything at least this often, also when
    /// nothing changed (time-based decisions such as node heartbeats).
    pub resync: Duration,
    /// A node whose heartbeats stop for this long becomes Ready=Unknown.
    pub node_monitor_grace_period: Duration,
    /// The pods of a node not Ready for this long are deleted and replaced
    /// elsewhere.
    pub pod_eviction_timeout: Duration,
    /// Where nodes without a podCIDR get theirs; `None` assigns none.
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// The prefix length of each node's pod CIDR.
    pub node_cidr_mask_size: u8,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            leader_election: Some(LeaderElection::default()),
            resync: Duration::from_secs(1),
            // kube-controller-manager's --node-monitor-grace-period.
            node_monitor_grace_period: Duration::from_secs(40),
            // Kubernetes waits 300 s (the default toleration of the
            // unreachable taint) for a node that may be cut off but still
            // running its pods. On the local cluster a node whose lease
            // lapsed has lost its agent on this very machine, nothing can
            // partition it, and the 40 s grace already passed: 5 s more
            // keeps the failover test short without risking two copies.
            pod_eviction_timeout: Duration::from_secs(5),
            cluster_cidr: Some(
                Ipv4Cidr::new(std::net::Ipv4Addr::new(10, 244, 0, 0), 16).expect("a valid CIDR"),
            ),
            node_cidr_mask_size: 24,
        }
    }
}

/// Why a pass failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What every controller works with.
#[derive(Clone)]
pub struct Context {
    pub cache: Arc<Cache>,
    pub client: Client,
    pub config: Arc<ControllerConfig>,
    /// Which instance acts (the leader's identity), for events.
    pub identity: String,
}

/// One reconciler.
pub trait Controller: Send + 'static {
    const NAME: &'static str;

    /// One pass over the cluster; returns the kinds it wrote.
    fn reconcile(
        &mut self,
        context: &Context,
    ) -> impl Future<Output = Result<Vec<Kind>, ControllerError>> + Send;
}

/// Changes that arrive together (a rollout's many pod updates) make one
/// pass, not one each.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// How long a failed pass waits before the next.
const RETRY: Duration = Duration::from_millis(500);

async fn drive<C: Controller>(mut controller: C, context: Context) {
    context.cache.wait_synced().await;
    let mut changes = context.cache.subscribe();
    loop {
        changes.borrow_and_update();
        match controller.reconcile(&context).await {
            Ok(written) if !written.is_empty() => context.cache.catch_up(&written).await,
            Ok(_) => {}
            Err(error) => {
                warn!(controller = C::NAME, %error, "pass failed");
                tokio::time::sleep(RETRY).await;
            }
        }
        let _ = tokio::time::timeout(context.config.resync, changes.changed()).await;
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// The kinds the controllers read.
const CACHED: &[Kind] = &[
    Kind::Namespace,
    Kind::Node,
    Kind::Pod,
    Kind::Service,
    Kind::Endpoints,
    Kind::EndpointSlice,
    Kind::ReplicaSet,
    Kind::Deployment,
    Kind::Lease,
];

/// Starts the cache, the scheduler and every controller on `tasks`.
fn start_all(api: &Api, store: &Store, config: &Arc<ControllerConfig>, tasks: &mut JoinSet<()>) {
    let context = Context {
        cache: Cache::start(store.clone(), CACHED, tasks),
        client: Client::new(api.clone()),
        config: config.clone(),
        identity: config
            .leader_election
            .as_ref()
            .map_or_else(leader::default_identity, |election| {
                election.identity.clone()
            }),
    };
    tasks.spawn(drive(crate::scheduler::Scheduler, context.clone()));
    tasks.spawn(drive(endpointslice::EndpointSlices, context.clone()));
    tasks.spawn(drive(endpoints::Endpoints, context.clone()));
    tasks.spawn(drive(replicaset::ReplicaSets, context.clone()));
    tasks.spawn(drive(deployment::Deployments, context.clone()));
    tasks.spawn(drive(
        nodelifecycle::NodeLifecycle::default(),
        context.clone(),
    ));
    tasks.spawn(drive(podcidr::PodCidrs::default(), context.clone()));
    tasks.spawn(drive(gc::GarbageCollector, context.clone()));
    tasks.spawn(drive(namespace::Namespaces, context.clone()));
}

/// Runs the controllers for as long as the future is polled: at once
/// without leader election, else during each term this instance leads.
pub async fn run(api: Api, store: Store, config: ControllerConfig) {
    let config = Arc::new(config);
    let Some(election) = config.leader_election.clone() else {
        let mut tasks = JoinSet::new();
        start_all(&api, &store, &config, &mut tasks);
        std::future::pending::<()>().await;
        return;
    };
    let client = Client::new(api.clone());
    loop {
        let term = election.acquire(&client, &store).await;
        info!(identity = election.identity, "leading: controllers start");
        let mut tasks = JoinSet::new();
        start_all(&api, &store, &config, &mut tasks);
        election.hold(&client, &store, term).await;
        tasks.abort_all();
        warn!(
            identity = election.identity,
            "lost the lease: controllers stop"
        );
    }
}
