//! The loop that runs the scheduler and the controllers while this instance
//! holds the leader lease (kube-controller-manager's and kube-scheduler's
//! part of the control plane).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::api::Api;
use crate::controllers::{
    Cache, Client, Context, Controller, ControllerConfig, Kind, cronjob, default_identity,
    deployment, endpoints, endpointslice, gc, ingress, job, localpath, namespace, nodelifecycle,
    podcidr, protection, replicaset, resourcequota, statefulset, volumebinder,
};
use crate::scheduler::Scheduler;
use crate::store::Store;

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
        let wait = controller
            .wake_in()
            .map_or(context.config.resync, |due| due.min(context.config.resync));
        let _ = tokio::time::timeout(wait, changes.changed()).await;
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
    Kind::ReplicationController,
    Kind::Deployment,
    Kind::StatefulSet,
    Kind::DaemonSet,
    Kind::ControllerRevision,
    Kind::Job,
    Kind::CronJob,
    Kind::Lease,
    Kind::PersistentVolume,
    Kind::PersistentVolumeClaim,
    Kind::StorageClass,
    Kind::ResourceQuota,
    Kind::Secret,
    Kind::Ingress,
    Kind::IngressClass,
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
            .map_or_else(default_identity, |election| election.identity.clone()),
    };
    tasks.spawn(drive(Scheduler, context.clone()));
    tasks.spawn(drive(endpointslice::EndpointSlices, context.clone()));
    tasks.spawn(drive(endpoints::Endpoints, context.clone()));
    tasks.spawn(drive(replicaset::ReplicaSets, context.clone()));
    tasks.spawn(drive(replicaset::ReplicationControllers, context.clone()));
    tasks.spawn(drive(deployment::Deployments, context.clone()));
    tasks.spawn(drive(statefulset::StatefulSets, context.clone()));
    tasks.spawn(drive(
        crate::controllers::daemonset::DaemonSets,
        context.clone(),
    ));
    tasks.spawn(drive(
        nodelifecycle::NodeLifecycle::default(),
        context.clone(),
    ));
    tasks.spawn(drive(podcidr::PodCidrs::default(), context.clone()));
    tasks.spawn(drive(gc::GarbageCollector, context.clone()));
    tasks.spawn(drive(namespace::Namespaces, context.clone()));
    tasks.spawn(drive(volumebinder::VolumeBinder, context.clone()));
    tasks.spawn(drive(localpath::LocalPathProvisioner, context.clone()));
    tasks.spawn(drive(protection::Protection, context.clone()));
    tasks.spawn(drive(job::Jobs::default(), context.clone()));
    tasks.spawn(drive(cronjob::CronJobs::default(), context.clone()));
    tasks.spawn(drive(resourcequota::ResourceQuotas, context.clone()));
    tasks.spawn(drive(ingress::IngressEndpoints, context.clone()));
    tasks.spawn(drive(ingress::IngressStatus::default(), context.clone()));
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
