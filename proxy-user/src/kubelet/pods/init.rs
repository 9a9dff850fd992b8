//! A pod's init containers, run in their order before any app container:
//! each to success before the next one starts (a failure restarts it, with
//! the CrashLoopBackOff delay, unless the pod's restartPolicy is Never),
//! sidecars started on the way and left running.
use std::sync::Arc;

use super::{
    container::{self, Stop},
    runtime::PodRuntime,
    sidecars::Sidecars,
    status::Kind,
};

/// Runs the init containers in order; true once all completed (the pod is
/// initialized), false if one failed for good or the pod was told to stop.
pub async fn run(runtime: &Arc<PodRuntime>, stop: &mut Stop, sidecars: &mut Sidecars) -> bool {
    let init: Vec<(usize, Kind, bool)> = {
        let state = runtime.snapshot();
        (state.containers.iter().enumerate())
            .filter(|(_, c)| c.kind != Kind::App)
            .map(|(index, c)| (index, c.kind, c.done))
            .collect()
    };
    for (index, kind, completed) in init {
        if stop.borrow().is_some() {
            return false;
        }
        if kind == Kind::Sidecar {
            if !sidecars.start(runtime, index, stop).await {
                return false;
            }
            continue;
        }
        // Completed before an agent restart: not run again.
        if completed {
            continue;
        }
        container::run(runtime.clone(), index, stop.clone()).await;
        let exit = runtime.snapshot().containers[index].state.exit_code();
        if exit != Some(0) {
            return false;
        }
    }
    true
}
