//! Writes a pod's `status` back to etcd: with compare-and-swap on the
//! pod's revision, and only when it changed, so an agent never undoes a
//! write it has not seen.
use std::{sync::Arc, time::Duration};

use serde_json::Value;
use tracing::warn;

use super::{pod_key::PodKey, runtime::PodRuntime};
use crate::kubelet::store::{Store, StoreError, Written};

/// How long status changes are gathered before one write: a pod starting
/// changes several fields in a row.
const SETTLE: Duration = Duration::from_millis(50);
const RETRY: Duration = Duration::from_secs(1);

/// Writes the pod's status, then again whenever the runtime says it
/// changed, until aborted.
pub async fn run(runtime: Arc<PodRuntime>) {
    // Subscribed before the first write: a change during it is written too.
    let mut changes = runtime.changes();
    loop {
        tokio::time::sleep(SETTLE).await;
        while let Err(error) = write(&runtime).await {
            warn!(pod = %runtime.key, %error, "writing the pod status failed; retrying");
            tokio::time::sleep(RETRY).await;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// One status write: read, render, compare-and-swap, again on conflict.
pub async fn write(runtime: &PodRuntime) -> Result<(), StoreError> {
    write_to(&runtime.ctx.store, &runtime.key, &runtime.uid, |stored| {
        runtime.snapshot().render(stored)
    })
    .await
}

async fn write_to(
    store: &Store,
    key: &PodKey,
    uid: &str,
    render: impl Fn(&Value) -> Value,
) -> Result<(), StoreError> {
    loop {
        let Some(stored) = store.get(&key.etcd_key()).await? else {
            return Ok(());
        };
        if stored.object["metadata"]["uid"].as_str() != Some(uid) {
            return Ok(());
        }
        let status = render(&stored.object["status"]);
        if stored.object["status"] == status {
            return Ok(());
        }
        let mut pod = stored.object;
        pod["status"] = status;
        if store
            .update(&key.etcd_key(), &pod, stored.mod_revision)
            .await?
            == Written::Done
        {
            return Ok(());
        }
    }
}
