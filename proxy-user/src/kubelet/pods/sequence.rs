//! The order of a pod's containers: init containers (and sidecars) first,
//! then the app containers together; on the way down the app containers
//! stop first and the sidecars get what is left of the grace period.
use std::sync::Arc;

use tokio::time::Instant;

use super::{
    container::{self, Stop},
    init,
    runtime::PodRuntime,
    sidecars::Sidecars,
    status::Kind,
};

/// Runs the pod's containers until they are done or `stop` says so and
/// they stopped.
pub async fn run(runtime: Arc<PodRuntime>, mut stop: Stop) {
    let mut sidecars = Sidecars::new();
    let mut deadline = None;
    if init::run(&runtime, &mut stop, &mut sidecars).await {
        runtime.set_initialized();
        let apps: Vec<_> = (runtime.indices(Kind::App).into_iter())
            .map(|index| tokio::spawn(container::run(runtime.clone(), index, stop.clone())))
            .collect();
        let all_done = async {
            for task in apps {
                let _ = task.await;
            }
        };
        tokio::pin!(all_done);
        loop {
            tokio::select! {
                () = &mut all_done => break,
                grace = container::stopped(&mut stop), if deadline.is_none() => {
                    deadline = Some(Instant::now() + grace);
                }
            }
        }
    }
    if deadline.is_none() && stop.borrow().is_some() {
        deadline = Some(Instant::now() + container::stopped(&mut stop).await);
    }
    // App containers that ended on their own leave the sidecars the pod's
    // whole grace period.
    let grace = deadline.map_or_else(
        || runtime.grace(),
        |deadline| deadline.saturating_duration_since(Instant::now()),
    );
    sidecars.stop(grace).await;
}
