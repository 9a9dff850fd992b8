//! The loop that runs the scheduler and the controllers while this instance
//! holds the leader lease (kube-controller-manager's and kube-scheduler's
//! part of the control plane).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use skiff_etcd::backoff::Backoff;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::api::Api;
use crate::controllers::{
    Cache, Client, Context, Controller, ControllerConfig, Kind, clusterroleaggregation, cronjob,
    csrapproving, csrsigning, default_identity, deployment, endpoints, endpointslice, gc, ingress,
    job, localpath, namespace, nodelifecycle, podcidr, protection, replicaset, resourcequota,
    serviceaccounts, statefulset, tokencleaner, volumebinder,
};
use crate::scheduler::Scheduler;
use crate::store::Store;

/// Changes that arrive together (a rollout's many pod updates) make one
/// pass, not one each.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// How long a failed pass waits before the next.
const RETRY: Duration = Duration::from_millis(500);

/// A controller that has run this long without panicking starts over
/// from the shortest restart delay.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs the future `run` makes, again after each panic (100 ms doubling to
/// 5 s between restarts), logging each panic with `name`. A task abort
/// (the end of a term) still ends it.
async fn supervise<F, Fut>(name: &'static str, run: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let Err(panic) = AssertUnwindSafe(run()).catch_unwind().await else {
            return;
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        let message = panic
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        error!(controller = name, panic = message, restart_in = ?delay, "controller panicked");
        tokio::time::sleep(delay).await;
    }
}

/// Runs `make()`'s controller under [`supervise`] on `tasks`.
fn spawn<C: Controller>(tasks: &mut JoinSet<()>, context: &Context, make: fn() -> C) {
    let context = context.clone();
    tasks.spawn(async move { supervise(C::NAME, || drive(make(), context.clone())).await });
}

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
    Kind::ServiceAccount,
    Kind::ConfigMap,
    Kind::Ingress,
    Kind::IngressClass,
    Kind::ClusterRole,
    Kind::CertificateSigningRequest,
];

/// Starts the cache, the scheduler and every controller on `tasks`, each
/// writing through `api`.
fn start_all(api: Api, store: Store, config: &Arc<ControllerConfig>, tasks: &mut JoinSet<()>) {
    let context = Context {
        cache: Cache::start(store, CACHED, tasks),
        client: Client::new(api),
        config: config.clone(),
        identity: config
            .leader_election
            .as_ref()
            .map_or_else(default_identity, |election| election.identity.clone()),
    };
    spawn(tasks, &context, || Scheduler);
    spawn(tasks, &context, || endpointslice::EndpointSlices);
    spawn(tasks, &context, || endpoints::Endpoints);
    spawn(tasks, &context, || replicaset::ReplicaSets);
    spawn(tasks, &context, || replicaset::ReplicationControllers);
    spawn(tasks, &context, || deployment::Deployments);
    spawn(tasks, &context, || statefulset::StatefulSets);
    spawn(tasks, &context, || {
        crate::controllers::daemonset::DaemonSets
    });
    spawn(tasks, &context, nodelifecycle::NodeLifecycle::default);
    spawn(tasks, &context, podcidr::PodCidrs::default);
    spawn(tasks, &context, || gc::GarbageCollector);
    spawn(tasks, &context, || namespace::Namespaces);
    spawn(tasks, &context, || volumebinder::VolumeBinder);
    spawn(tasks, &context, || localpath::LocalPathProvisioner);
    spawn(tasks, &context, || protection::Protection);
    spawn(tasks, &context, job::Jobs::default);
    spawn(tasks, &context, cronjob::CronJobs::default);
    spawn(tasks, &context, || resourcequota::ResourceQuotas);
    spawn(tasks, &context, || ingress::IngressEndpoints);
    spawn(tasks, &context, ingress::IngressStatus::default);
    spawn(tasks, &context, || {
        clusterroleaggregation::ClusterRoleAggregation
    });
    spawn(tasks, &context, || serviceaccounts::DefaultServiceAccounts);
    if config.root_ca_cert.is_some() {
        spawn(tasks, &context, || serviceaccounts::RootCaPublisher);
    }
    spawn(tasks, &context, || csrapproving::CsrApproving);
    spawn(tasks, &context, || csrsigning::CsrSigning);
    spawn(tasks, &context, tokencleaner::TokenCleaner::default);
}

/// Runs the controllers for as long as the future is polled: at once
/// without leader election, else during each term this instance leads.
pub async fn run(api: Api, store: Store, config: ControllerConfig) {
    let config = Arc::new(config);
    let Some(election) = config.leader_election.clone() else {
        let mut tasks = JoinSet::new();
        start_all(api, store, &config, &mut tasks);
        std::future::pending::<()>().await;
        return;
    };
    let client = Client::new(api.clone());
    loop {
        let term = election.acquire(&client, &store).await;
        info!(identity = election.identity, "leading: controllers start");
        let fence = term.fence.clone();
        let mut tasks = JoinSet::new();
        start_all(
            api.fenced(fence.clone()),
            store.fenced(fence),
            &config,
            &mut tasks,
        );
        election.hold(&client, &store, term).await;
        // Every controller has stopped before the lease can expire.
        tasks.shutdown().await;
        warn!(
            identity = election.identity,
            "lost the lease: controllers stop"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Log lines, kept for the test to read.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl Write for Logs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_panicking_controller_is_restarted_and_logged() {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _logging = tracing::subscriber::set_default(subscriber);
        let runs = AtomicUsize::new(0);
        let started = Instant::now();
        supervise("flaky", || async {
            match runs.fetch_add(1, Ordering::SeqCst) {
                0 => panic!("first pass failed"),
                1 => panic!("{} failed", "second pass"),
                _ => {}
            }
        })
        .await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "restarted after each panic");
        // 100 ms, then 200 ms between restarts.
        assert!(started.elapsed() >= Duration::from_millis(300));
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let panics: Vec<&str> = logs
            .lines()
            .filter(|line| line.contains("controller panicked"))
            .collect();
        assert_eq!(panics.len(), 2, "{logs}");
        assert!(panics[0].contains("controller=\"flaky\""), "{logs}");
        assert!(panics[0].contains("first pass failed"), "{logs}");
        assert!(panics[1].contains("second pass failed"), "{logs}");
    }
}
