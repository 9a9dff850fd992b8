//! What the tasks running one pod share: the pod as it was started, its
//! sandbox, and the status its containers report, which the status writer
//! sends to the API server.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::watch;

use crate::kubelet::{events::Recorder, volumes::PodVolumes};

use super::{
    context::Context,
    netns::Sandbox,
    pod_key::PodKey,
    status::{ContainerStatus, Kind, PodState},
};

/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

pub struct PodRuntime {
    pub ctx: Arc<Context>,
    pub key: PodKey,
    pub uid: String,
    pub pod: Pod,
    pub sandbox: Sandbox,
    /// The pod's volumes, made as its containers start.
    pub volumes: Arc<PodVolumes>,
    /// Records Events about the pod.
    pub events: Recorder,
    /// Init containers (sidecars among them) in order, then the app
    /// containers: the order of `PodState::containers` too.
    containers: Vec<Container>,
    state: Mutex<PodState>,
    /// Tells the status writer and tasks waiting in `until` that the
    /// state changed.
    changed: watch::Sender<()>,
}

impl PodRuntime {
    pub fn new(
        ctx: Arc<Context>,
        key: PodKey,
        uid: String,
        pod: Pod,
        sandbox: Sandbox,
        state: PodState,
    ) -> Self {
        let containers = (pod.spec.iter())
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .cloned()
            .collect();
        PodRuntime {
            volumes: Arc::new(PodVolumes::new(&ctx.config.state_dir, pod.clone())),
            events: Recorder::for_pod(ctx.api.clone(), &ctx.config.node_name, &pod),
            ctx,
            key,
            uid,
            pod,
            sandbox,
            containers,
            state: Mutex::new(state),
            changed: watch::Sender::new(()),
        }
    }

    /// Init containers, then app containers.
    pub fn containers(&self) -> &[Container] {
        &self.containers
    }

    /// The indices of `kind`'s containers, in order.
    pub fn indices(&self, kind: Kind) -> Vec<usize> {
        let state = self.lock();
        (state.containers.iter().enumerate())
            .filter(|(_, c)| c.kind == kind)
            .map(|(index, _)| index)
            .collect()
    }

    /// The pod's cgroup directory name below the agent's pods cgroup.
    pub fn cgroup_name(&self) -> String {
        self.key.slug()
    }

    /// The restart policy of the container at `index`: the pod's for app
    /// containers, Always for sidecars, and for init containers OnFailure
    /// unless the pod's is Never.
    pub fn restart_policy(&self, index: usize) -> &str {
        let pod = (self.pod.spec.as_ref())
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always");
        match (self.lock().containers[index].kind, pod) {
            (Kind::App, pod) => pod,
            (Kind::Sidecar, _) => "Always",
            (Kind::Init, "Never") => "Never",
            (Kind::Init, _) => "OnFailure",
        }
    }

    pub fn grace(&self) -> Duration {
        grace_of(&self.pod)
    }

    pub fn snapshot(&self) -> PodState {
        self.lock().clone()
    }

    pub fn update(&self, index: usize, change: impl FnOnce(&mut ContainerStatus)) {
        change(&mut self.lock().containers[index]);
        self.changed.send_replace(());
    }

    pub fn set_initialized(&self) {
        self.lock().initialized = true;
        self.changed.send_replace(());
    }

    /// Sees every change of the state made after this call.
    pub fn changes(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Waits until the pod's state passes `test`.
    pub async fn until(&self, test: impl Fn(&PodState) -> bool) {
        let mut changes = self.changes();
        while !test(&self.lock()) {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PodState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The grace period the pod's deletion asked for, else its own.
pub fn grace_of(pod: &Pod) -> Duration {
    let seconds = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds);
    seconds.map_or(DEFAULT_GRACE, |s| Duration::from_secs(s.max(0) as u64))
}
