//! Housekeeping every skiff-control runs beside the API, leader or not:
//! etcd's compaction and defragmentation (`compaction`) and the release of
//! leaked Service allocations (`repair`). Neither needs the leader lease:
//! compaction rounds are taken by one server each through a transaction on
//! `compact_rev_key`, as kube-apiserver's compactor does, and the repair's
//! deletes compare each record's revision, as several kube-apiservers'
//! repair controllers run side by side.

mod compaction;
mod leaks;
mod repair;

use std::time::Duration;

use tokio::task::JoinSet;
use tracing::info;

use crate::store::Store;

pub use compaction::DefragPolicy;

/// When housekeeping runs.
#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// Compaction rounds this often (kube-apiserver's
    /// `--etcd-compaction-interval`); `None` compacts nothing and, with
    /// it, defragments nothing.
    pub compaction_interval: Option<Duration>,
    /// When a member's database counts as fragmented.
    pub defrag: DefragPolicy,
    /// Leaked allocations are looked for this often; `None` never.
    pub repair_interval: Option<Duration>,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            compaction_interval: Some(Duration::from_secs(300)),
            defrag: DefragPolicy::default(),
            // kube-apiserver's repair controllers' interval.
            repair_interval: Some(Duration::from_secs(180)),
        }
    }
}

/// Starts the housekeeping tasks on `tasks`. `endpoints` are etcd's
/// members, defragmented one at a time.
pub fn start(
    store: &Store,
    endpoints: &[String],
    config: &MaintenanceConfig,
    tasks: &mut JoinSet<()>,
) {
    info!(
        compaction_interval = ?config.compaction_interval,
        defrag_min_free_bytes = config.defrag.min_free_bytes,
        defrag_min_free_fraction = config.defrag.min_free_fraction,
        repair_interval = ?config.repair_interval,
        "etcd maintenance"
    );
    if let Some(interval) = config.compaction_interval {
        tasks.spawn(compaction::run(
            store.client(),
            endpoints.to_vec(),
            interval,
            config.defrag,
        ));
    }
    if let Some(interval) = config.repair_interval {
        tasks.spawn(repair::run(store.clone(), interval));
    }
}

#[cfg(test)]
mod tests;
