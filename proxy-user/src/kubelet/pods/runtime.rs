//! What the tasks running one pod share: the pod as it was started, its
//! sandbox, and the status its containers report, which the status writer
//! sends to etcd.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::Notify;

use crate::kubelet::{events::Recorder, volumes::PodVolumes};

use super::{
    context::Context,
    netns::Sandbox,
    pod_key::PodKey,
    status::{ContainerStatus, PodState},
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
    state: Mutex<PodState>,
    /// Wakes the status writer.
    pub changed: Notify,
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
        PodRuntime {
            volumes: Arc::new(PodVolumes::new(&ctx.config.state_dir, pod.clone())),
            events: Recorder::for_pod(ctx.store.clone(), &ctx.config.node_name, &pod),
            ctx,
            key,
            uid,
            pod,
            sandbox,
            state: Mutex::new(state),
            changed: Notify::new(),
        }
    }

    pub fn containers(&self) -> &[Container] {
        self.pod.spec.as_ref().map_or(&[], |s| &s.containers)
    }

    /// The pod's cgroup directory name below the agent's pods cgroup.
    pub fn cgroup_name(&self) -> String {
        self.key.slug()
    }

    pub fn restart_policy(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            .unwrap_or("Always")
    }

    pub fn grace(&self) -> Duration {
        grace_of(&self.pod)
    }

    pub fn snapshot(&self) -> PodState {
        self.lock().clone()
    }

    pub fn update(&self, index: usize, change: impl FnOnce(&mut ContainerStatus)) {
        change(&mut self.lock().containers[index]);
        self.changed.notify_one();
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
