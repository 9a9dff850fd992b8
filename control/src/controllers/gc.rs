//! Garbage collection by ownerReferences (background propagation): an
//! object all of whose owners are gone is deleted; its own dependents
//! follow on later passes.

use serde_json::Value;
use tracing::info;

use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta};
use crate::store::{StoreError, object_key};

pub struct GarbageCollector;

/// The kinds whose objects have owners here.
const DEPENDENTS: &[Kind] = &[
    Kind::Pod,
    Kind::ReplicaSet,
    Kind::EndpointSlice,
    Kind::ControllerRevision,
    Kind::PersistentVolumeClaim,
];

impl Controller for GarbageCollector {
    const NAME: &'static str = "garbagecollector";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let mut wrote = Vec::new();
        for &kind in DEPENDENTS {
            for object in context.cache.list(kind) {
                let Some(owners) = object["metadata"]["ownerReferences"].as_array() else {
                    continue;
                };
                if owners.is_empty() || meta::is_terminating(&object) {
                    continue;
                }
                let mut orphaned = true;
                for owner in owners {
                    if owner_exists(context, &object, owner).await? {
                        orphaned = false;
                        break;
                    }
                }
                if orphaned {
                    info!(?kind, object = meta::name(&object), "owner gone: deleting");
                    context.client.delete(kind, &object, None).await?;
                    wrote.push(kind);
                }
            }
        }
        Ok(wrote)
    }
}

/// Whether the owner still exists (same uid), read from etcd itself: the
/// cache may not have seen a new owner yet, and deleting on a stale view
/// cannot be undone. An owner of a kind this controller does not know
/// counts as present.
async fn owner_exists(
    context: &Context,
    object: &Value,
    owner: &Value,
) -> Result<bool, ControllerError> {
    let Some(kind) = Kind::of_reference(
        owner["apiVersion"].as_str().unwrap_or_default(),
        owner["kind"].as_str().unwrap_or_default(),
    ) else {
        return Ok(true);
    };
    let name = owner["name"].as_str().unwrap_or_default();
    if let Some(cached) = context.cache.get(kind, Some(meta::namespace(object)), name)
        && cached["metadata"]["uid"] == owner["uid"]
    {
        return Ok(true);
    }
    let namespace = kind.namespaced().then(|| meta::namespace(object));
    match context
        .cache
        .store()
        .get(&object_key(kind.storage(), namespace, name))
        .await
    {
        Ok(current) => Ok(current["metadata"]["uid"] == owner["uid"]),
        Err(StoreError::NotFound { .. }) => Ok(false),
        Err(error) => Err(error.into()),
    }
}
