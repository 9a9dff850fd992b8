//! A pod's sidecars (init containers with `restartPolicy: Always`): each
//! starts in the init order and counts as started once its startup probe
//! passed (or at once without one); they keep running beside the app
//! containers and stop after them.
use std::{sync::Arc, time::Duration};

use tokio::{sync::watch, task::JoinHandle};

use super::{
    container::{self, Stop},
    runtime::PodRuntime,
};

pub struct Sidecars {
    stop: watch::Sender<Option<Duration>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sidecars {
    pub fn new() -> Sidecars {
        Sidecars {
            stop: watch::Sender::new(None),
            tasks: Vec::new(),
        }
    }

    /// Starts the sidecar at `index` and waits until it started. False if
    /// the pod was told to stop first.
    pub async fn start(
        &mut self,
        runtime: &Arc<PodRuntime>,
        index: usize,
        stop: &mut Stop,
    ) -> bool {
        let task = container::run(runtime.clone(), index, self.stop.subscribe());
        self.tasks.push(tokio::spawn(task));
        tokio::select! {
            () = runtime.until(|state| state.containers[index].started) => true,
            _ = container::stopped(stop) => false,
        }
    }

    /// Stops every sidecar within `grace` and waits for them.
    pub async fn stop(self, grace: Duration) {
        self.stop.send_replace(Some(grace));
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
