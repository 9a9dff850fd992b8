//! Writes a pod's `status` through the API server as the node: a merge
//! patch of `pods/status` from the newest pod seen (the etcd watch's, or
//! the answer to the last write) to the rendered status, only when it
//! changed, carrying that pod's uid and resourceVersion, so a write someone
//! else made in between is a conflict, retried once the watch has it, and
//! never undone.
use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::api::Patch;
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tracing::warn;

use super::{context::Context, pod_key::PodKey, runtime::PodRuntime};
use crate::apiserver::{is_conflict, is_not_found, patch_params};

/// How long status changes are gathered before one write: a pod starting
/// changes several fields in a row.
const SETTLE: Duration = Duration::from_millis(50);
const RETRY: Duration = Duration::from_secs(1);

/// The pod as stored: what the watch delivers and what the last write
/// answered, the newer of the two being the base of the next write.
pub struct Stored {
    watched: watch::Receiver<Option<Pod>>,
    written: Option<Pod>,
}

impl Stored {
    pub fn new(watched: watch::Receiver<Option<Pod>>) -> Stored {
        Stored {
            watched,
            written: None,
        }
    }

    /// The newest pod seen; `None` once it is gone.
    fn newest(&self) -> Option<Pod> {
        let watched = self.watched.borrow().clone()?;
        Some(match &self.written {
            Some(written) if revision(written) > revision(&watched) => written.clone(),
            _ => watched,
        })
    }

    /// Waits until the watch has a pod newer than `seen` (or none).
    async fn newer_than(&mut self, seen: u64) {
        let waited = self
            .watched
            .wait_for(|pod| pod.as_ref().is_none_or(|pod| revision(pod) > seen))
            .await;
        // A closed channel means the pod's worker is gone: nothing to wait for.
        drop(waited);
    }
}

/// Writes the pod's status, then again whenever the runtime says it
/// changed, until aborted.
pub async fn run(runtime: Arc<PodRuntime>, mut stored: Stored) {
    // Subscribed before the first write: a change during it is written too.
    let mut changes = runtime.changes();
    loop {
        tokio::time::sleep(SETTLE).await;
        let render = |status: &Value| runtime.snapshot().render(status);
        while let Err(error) = write(
            &runtime.ctx,
            &runtime.key,
            &runtime.uid,
            &mut stored,
            render,
        )
        .await
        {
            warn!(pod = %runtime.key, %error, "writing the pod status failed; retrying");
            tokio::time::sleep(RETRY).await;
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// One status write: `render` given the stored status, patched, again on a
/// conflict. Nothing is written for a pod that is gone or was replaced by
/// another of the same name.
pub async fn write(
    ctx: &Context,
    key: &PodKey,
    uid: &str,
    stored: &mut Stored,
    render: impl Fn(&Value) -> Value,
) -> Result<(), kube::Error> {
    let pods: kube::Api<Pod> = kube::Api::namespaced(ctx.api.clone(), &key.namespace);
    loop {
        let Some(pod) = stored.newest() else {
            return Ok(());
        };
        if pod.metadata.uid.as_deref() != Some(uid) {
            return Ok(());
        }
        let before = serde_json::to_value(&pod.status).map_err(kube::Error::SerdeError)?;
        let status = render(&before);
        if before == status {
            return Ok(());
        }
        let seen = revision(&pod);
        let patch = json!({
            "metadata": { "uid": uid, "resourceVersion": seen.to_string() },
            "status": merge_patch(&before, &status),
        });
        match pods
            .patch_status(&key.name, &patch_params(), &Patch::Merge(&patch))
            .await
        {
            Ok(written) => {
                stored.written = Some(written);
                return Ok(());
            }
            Err(error) if is_conflict(&error) => stored.newer_than(seen).await,
            Err(error) if is_not_found(&error) => return Ok(()),
            Err(error) => return Err(error),
        }
    }
}

/// The pod's resourceVersion as a number (0 when it has none).
pub fn revision(pod: &Pod) -> u64 {
    (pod.metadata.resource_version.as_deref())
        .and_then(|version| version.parse().ok())
        .unwrap_or(0)
}

/// The JSON merge patch (RFC 7386) taking `before` to `after`: changed and
/// new members, `null` for removed ones, objects patched member by member.
fn merge_patch(before: &Value, after: &Value) -> Value {
    let (Value::Object(before), Value::Object(after)) = (before, after) else {
        return after.clone();
    };
    let mut patch = Map::new();
    for (name, value) in after {
        match before.get(name) {
            Some(old) if old == value => {}
            Some(old) => {
                patch.insert(name.clone(), merge_patch(old, value));
            }
            None => {
                patch.insert(name.clone(), value.clone());
            }
        }
    }
    for name in before.keys().filter(|name| !after.contains_key(*name)) {
        patch.insert(name.clone(), Value::Null);
    }
    Value::Object(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_merge_patch_sets_what_changed_and_removes_what_went() {
        let before = json!({
            "phase": "Pending",
            "message": "no address",
            "hostIP": "10.0.0.1",
            "conditions": [{ "type": "Ready", "status": "False" }],
            "nested": { "kept": 1, "changed": 1, "gone": 1 },
        });
        let after = json!({
            "phase": "Running",
            "hostIP": "10.0.0.1",
            "conditions": [{ "type": "Ready", "status": "True" }],
            "nested": { "kept": 1, "changed": 2 },
            "podIP": "10.244.0.5",
        });
        let patch = merge_patch(&before, &after);
        assert_eq!(
            patch,
            json!({
                "phase": "Running",
                "message": null,
                "conditions": [{ "type": "Ready", "status": "True" }],
                "nested": { "changed": 2, "gone": null },
                "podIP": "10.244.0.5",
            })
        );
        let mut applied = before.clone();
        json_merge(&mut applied, &patch);
        assert_eq!(applied, after);
    }

    /// RFC 7386's apply, to check the patch against.
    fn json_merge(target: &mut Value, patch: &Value) {
        let Value::Object(patch) = patch else {
            *target = patch.clone();
            return;
        };
        if !target.is_object() {
            *target = json!({});
        }
        let target = target.as_object_mut().unwrap();
        for (name, value) in patch {
            if value.is_null() {
                target.remove(name);
            } else {
                json_merge(target.entry(name.clone()).or_insert(Value::Null), value);
            }
        }
    }
}
