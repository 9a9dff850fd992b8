//! The volume binder (kube-controller-manager's PersistentVolume
//! controller): binds each claim to a volume that fits it and keeps both
//! phases current. A claim whose class waits for its first consumer is
//! bound only once the scheduler has picked a node for it
//! (`volume.kubernetes.io/selected-node`), to a volume that node reaches.
//! Binding is two writes, as upstream: the volume's `claimRef` first, then
//! (on a later pass, from the volume) the claim's `volumeName`. A volume
//! whose claim is gone is Released; what happens next is its reclaim
//! policy's business (the local-path provisioner deletes its own).

use serde_json::{Value, json};
use tracing::info;

use super::client::written;
use super::kind::Kind;
use super::storage::{claimed_by, pick_volume, selected_node, volume_name, waits_for_consumer};
use super::{Context, Controller, ControllerError, meta};

pub struct VolumeBinder;

/// Annotations the binder leaves on what it bound, as upstream.
const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

impl Controller for VolumeBinder {
    const NAME: &'static str = "volume-binder";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let claims = context.cache.list(Kind::PersistentVolumeClaim);
        let volumes = context.cache.list(Kind::PersistentVolume);
        let classes = context.cache.list(Kind::StorageClass);
        let mut written_kinds = Vec::new();
        let mut wrote = |kind: Kind, did: bool| {
            if did && !written_kinds.contains(&kind) {
                written_kinds.push(kind);
            }
        };
        for volume in &volumes {
            let claim = claim_of(volume, &claims);
            if let Some(claim) = claim.filter(|claim| volume_name(claim).is_none()) {
                wrote(
                    Kind::PersistentVolumeClaim,
                    bind_claim(context, claim, volume).await?,
                );
                continue;
            }
            let phase = match (&volume["spec"]["claimRef"], claim) {
                (Value::Null, _) => "Available",
                // The reclaim failed; the provisioner said why.
                _ if volume["status"]["phase"] == "Failed" => "Failed",
                (_, Some(claim)) if volume_name(claim) == Some(meta::name(volume)) => "Bound",
                _ => "Released",
            };
            wrote(
                Kind::PersistentVolume,
                set_phase(context, Kind::PersistentVolume, volume, phase, None).await?,
            );
        }
        for claim in claims.iter().filter(|claim| !meta::is_terminating(claim)) {
            match volume_name(claim) {
                Some(name) => {
                    let volume = volumes.iter().find(|volume| meta::name(volume) == name);
                    wrote(
                        Kind::PersistentVolumeClaim,
                        claim_status(context, claim, volume).await?,
                    );
                }
                None => wrote(
                    Kind::PersistentVolume,
                    reserve(context, claim, &volumes, &classes).await?,
                ),
            }
        }
        Ok(written_kinds)
    }
}

/// The claim the volume's `claimRef` names, if it still exists (the same
/// incarnation).
fn claim_of<'a>(volume: &Value, claims: &'a [Value]) -> Option<&'a Value> {
    if volume["spec"]["claimRef"].is_null() {
        return None;
    }
    claims.iter().find(|claim| claimed_by(volume, claim))
}

/// Reserves a volume for an unbound claim (its `claimRef`), when one fits
/// and, for a claim that waits for a consumer, its node has been picked.
async fn reserve(
    context: &Context,
    claim: &Value,
    volumes: &[Value],
    classes: &[Value],
) -> Result<bool, ControllerError> {
    let node = if waits_for_consumer(claim, classes) {
        let Some(node) = selected_node(claim) else {
            return Ok(false);
        };
        let Some(node) = context.cache.get(Kind::Node, None, node) else {
            return Ok(false);
        };
        Some(node)
    } else {
        None
    };
    let Some(volume) = pick_volume(claim, volumes, node.as_ref()) else {
        return Ok(false);
    };
    if claimed_by(volume, claim) && !volume["spec"]["claimRef"]["uid"].is_null() {
        return Ok(false);
    }
    let mut reserved = volume.clone();
    reserved["spec"]["claimRef"] = json!({
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": meta::namespace(claim),
        "name": meta::name(claim),
        "uid": meta::uid(claim),
        "resourceVersion": claim["metadata"]["resourceVersion"],
    });
    reserved["metadata"]["annotations"][BOUND_BY_CONTROLLER] = json!("yes");
    Ok(written(
        context
            .client
            .update(Kind::PersistentVolume, &reserved)
            .await,
    )?)
}

/// Sets the claim's `volumeName` to the volume reserved for it.
async fn bind_claim(
    context: &Context,
    claim: &Value,
    volume: &Value,
) -> Result<bool, ControllerError> {
    let mut bound = claim.clone();
    bound["spec"]["volumeName"] = json!(meta::name(volume));
    bound["metadata"]["annotations"][BIND_COMPLETED] = json!("yes");
    bound["metadata"]["annotations"][BOUND_BY_CONTROLLER] = json!("yes");
    let did = written(
        context
            .client
            .update(Kind::PersistentVolumeClaim, &bound)
            .await,
    )?;
    if did {
        info!(
            claim = %format!("{}/{}", meta::namespace(claim), meta::name(claim)),
            volume = meta::name(volume),
            "bound"
        );
    }
    Ok(did)
}

/// A bound claim's status: Bound with the volume's capacity and access
/// modes, or Lost when the volume is gone.
async fn claim_status(
    context: &Context,
    claim: &Value,
    volume: Option<&Value>,
) -> Result<bool, ControllerError> {
    let Some(volume) = volume else {
        return set_phase(context, Kind::PersistentVolumeClaim, claim, "Lost", None).await;
    };
    let extra = json!({
        "accessModes": volume["spec"]["accessModes"],
        "capacity": volume["spec"]["capacity"],
    });
    set_phase(
        context,
        Kind::PersistentVolumeClaim,
        claim,
        "Bound",
        Some(extra),
    )
    .await
}

/// Writes `phase` (and `extra` status fields) unless the object has them.
async fn set_phase(
    context: &Context,
    kind: Kind,
    object: &Value,
    phase: &str,
    extra: Option<Value>,
) -> Result<bool, ControllerError> {
    let mut status = object["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["phase"] = json!(phase);
    if let Some(Value::Object(fields)) = extra {
        for (field, value) in fields {
            status[field] = value;
        }
    }
    if status == object["status"] {
        return Ok(false);
    }
    let mut updated = object.clone();
    updated["status"] = status;
    Ok(written(context.client.update_status(kind, &updated).await)?)
}
