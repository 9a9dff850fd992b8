//! The repair loop: every interval, the allocation records against what
//! the stored Services hold (`alloc::Leaks` decides and releases).

use std::collections::HashSet;
use std::time::Duration;

use skiff_etcd::keys::{SERVICES, collection_prefix};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::alloc::{AllocError, Leaks, Released, allocation_records};
use crate::kinds::Holdings;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
enum RepairError {
    #[error("reading the allocation records: {0}")]
    Records(#[from] AllocError),
    #[error("listing the Services: {0}")]
    Services(#[from] StoreError),
}

pub async fn run(store: Store, interval: Duration) {
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut leaks = Leaks::default();
    loop {
        ticks.tick().await;
        match pass(&store, &mut leaks).await {
            Ok(released) if released.is_empty() => debug!("no leaked allocations"),
            Ok(released) => info!(released = released.len(), "allocation repair pass"),
            Err(error) => warn!(%error, "allocation repair pass failed"),
        }
    }
}

/// One pass: the records first, then the Services (see `Leaks::pass`).
async fn pass(store: &Store, leaks: &mut Leaks) -> Result<Released, RepairError> {
    let kv = store.client();
    let records = allocation_records(&kv).await?;
    let services = store
        .list(
            &collection_prefix(SERVICES, None),
            Default::default(),
            |_| true,
        )
        .await?
        .items;
    let held: HashSet<(String, String)> = services
        .iter()
        .flat_map(|service| {
            let uid = service["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Holdings::of(service)
                .record_keys()
                .into_iter()
                .map(move |key| (key, uid.clone()))
        })
        .collect();
    Ok(leaks.pass(&kv, &held, records).await?)
}
