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
mod kind;
mod leader;
pub mod meta;
mod replicaset;
mod services;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{info, warn};

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
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            leader_election: Some(LeaderElection::default()),
            resync: Duration::from_secs(1),
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
    };
    tasks.spawn(drive(crate::scheduler::Scheduler, context.clone()));
    tasks.spawn(drive(endpointslice::EndpointSlices, context.clone()));
    tasks.spawn(drive(endpoints::Endpoints, context.clone()));
    tasks.spawn(drive(replicaset::ReplicaSets, context.clone()));
    tasks.spawn(drive(deployment::Deployments, context.clone()));
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
