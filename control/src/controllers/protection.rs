//! Storage object in-use protection (kube-controller-manager's
//! pvc-protection and pv-protection controllers): a claim being deleted
//! keeps its `kubernetes.io/pvc-protection` finalizer while a pod that has
//! not finished uses it, and a volume being deleted keeps
//! `kubernetes.io/pv-protection` while it is bound; then the finalizer is
//! removed and the API removes the object.

use serde_json::{Value, json};
use tracing::info;

use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta, written};
use crate::kinds::{PV_PROTECTION, PVC_PROTECTION};

pub struct Protection;

impl Controller for Protection {
    const NAME: &'static str = "storage-protection";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let mut wrote = Vec::new();
        let pods = context.cache.list(Kind::Pod);
        for claim in context.cache.list(Kind::PersistentVolumeClaim) {
            if guarded(&claim, PVC_PROTECTION)
                && !pods.iter().any(|pod| uses(pod, &claim))
                && release(context, Kind::PersistentVolumeClaim, &claim, PVC_PROTECTION).await?
            {
                wrote = vec![Kind::PersistentVolumeClaim];
            }
        }
        for volume in context.cache.list(Kind::PersistentVolume) {
            if guarded(&volume, PV_PROTECTION)
                && volume["status"]["phase"] != "Bound"
                && release(context, Kind::PersistentVolume, &volume, PV_PROTECTION).await?
            {
                wrote.push(Kind::PersistentVolume);
            }
        }
        Ok(wrote)
    }
}

/// Being deleted, held by `finalizer`.
fn guarded(object: &Value, finalizer: &str) -> bool {
    meta::is_terminating(object)
        && object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|finalizers| finalizers.iter().any(|f| f == finalizer))
}

/// Whether a pod that has not finished mounts the claim.
fn uses(pod: &Value, claim: &Value) -> bool {
    meta::namespace(pod) == meta::namespace(claim)
        && !meta::pod_finished(pod)
        && pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|volume| volume["persistentVolumeClaim"]["claimName"] == meta::name(claim))
}

/// Removes `finalizer`; the API removes the object when it was the last.
pub(super) async fn release(
    context: &Context,
    kind: Kind,
    object: &Value,
    finalizer: &str,
) -> Result<bool, ControllerError> {
    let mut released = object.clone();
    let kept: Vec<Value> = object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    released["metadata"]["finalizers"] = json!(kept);
    let did = written(context.client.update(kind, &released).await)?;
    if did {
        info!(
            kind = kind.plural(),
            name = meta::name(object),
            finalizer,
            "no longer in use"
        );
    }
    Ok(did)
}
