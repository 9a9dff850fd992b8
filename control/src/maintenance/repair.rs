//! The repair loop: every interval, the allocation records against what
//! the stored Services hold (`leaks::Leaks` decides and releases).

use std::collections::HashSet;
use std::time::Duration;

use skiff_etcd::keys::{SERVICES, collection_prefix};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::leaks::{Leaks, Released, allocation_records};
use crate::alloc::AllocError;
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::alloc::{CLUSTER_IPS, NODE_PORTS, Owner, record_key};
    use crate::store::object_key;
    use crate::test_support::Etcd;

    async fn claim(store: &Store, key: &str, uid: &str) {
        let owner = serde_json::to_vec(&Owner::new("default", "web", uid)).unwrap();
        store.client().create(key, owner).await.unwrap();
    }

    async fn exists(store: &Store, key: &str) -> bool {
        store.client().get(key).await.unwrap().is_some()
    }

    #[tokio::test]
    async fn a_record_no_service_holds_is_released_when_seen_leaked_twice() {
        let etcd = Etcd::start();
        let store = etcd.store().await;
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": "web", "namespace": "default", "uid": "now" },
            "spec": { "type": "NodePort", "clusterIP": "10.96.0.60",
                      "ports": [{ "port": 80, "nodePort": 30080 }] },
        });
        store
            .create(&object_key(SERVICES, Some("default"), "web"), &service)
            .await
            .unwrap();
        let held_ip = record_key(CLUSTER_IPS, "10.96.0.60");
        let held_port = record_key(NODE_PORTS, 30080);
        // Claimed by a create that never wrote its Service.
        let orphan = record_key(CLUSTER_IPS, "10.96.0.50");
        // Held by an earlier Service of the same name (another uid).
        let earlier = record_key(NODE_PORTS, 30081);
        // Claimed again between the two passes.
        let reclaimed = record_key(CLUSTER_IPS, "10.96.0.70");
        claim(&store, &held_ip, "now").await;
        claim(&store, &held_port, "now").await;
        claim(&store, &orphan, "never-written").await;
        claim(&store, &earlier, "before").await;
        claim(&store, &reclaimed, "never-written").await;

        let mut leaks = Leaks::default();
        assert!(
            pass(&store, &mut leaks).await.unwrap().is_empty(),
            "a first sighting may be a create in flight"
        );
        let entry = store.client().get(&reclaimed).await.unwrap().unwrap();
        store
            .client()
            .delete(&reclaimed, entry.mod_revision)
            .await
            .unwrap();
        claim(&store, &reclaimed, "in-flight").await;

        let released: BTreeSet<String> = pass(&store, &mut leaks)
            .await
            .unwrap()
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(released, BTreeSet::from([orphan.clone(), earlier.clone()]));
        for key in [&held_ip, &held_port, &reclaimed] {
            assert!(exists(&store, key).await, "{key} stays");
        }
        assert!(!exists(&store, &orphan).await);

        // Still leaked a pass later: now it goes too.
        let released = pass(&store, &mut leaks).await.unwrap();
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].0, reclaimed);
        assert_eq!(released[0].1.uid, "in-flight");
    }
}
