//! Namespace deletion: a namespace marked for deletion (phase
//! Terminating) has everything in it deleted — pods gracefully, as their
//! nodes stop them — and once nothing is left its finalizers are cleared
//! through the API's `/finalize`, which removes it.

use serde_json::json;
use tracing::info;

use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta};
use crate::api::namespaced_collections;
use crate::store::{ListRequest, collection_prefix};

pub struct Namespaces;

impl Controller for Namespaces {
    const NAME: &'static str = "namespace";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let mut wrote = Vec::new();
        for namespace in context.cache.list(Kind::Namespace) {
            if !meta::is_terminating(&namespace) {
                continue;
            }
            let name = meta::name(&namespace);
            if empty(context, name).await? {
                let mut finalized = namespace.clone();
                finalized["spec"]["finalizers"] = json!([]);
                context.client.finalize(Kind::Namespace, &finalized).await?;
                info!(namespace = name, "namespace removed");
                wrote.push(Kind::Namespace);
            }
        }
        Ok(wrote)
    }
}

/// Deletes what is left in `namespace`; whether nothing was.
async fn empty(context: &Context, namespace: &str) -> Result<bool, ControllerError> {
    let store = context.cache.store();
    let mut empty = true;
    for (storage, group_path, plural) in namespaced_collections() {
        let prefix = collection_prefix(storage, Some(namespace));
        let page = store
            .list(&prefix, ListRequest::default(), |_| true)
            .await?;
        for object in page.items {
            empty = false;
            // Through the API: a pod is deleted gracefully (its node stops
            // it first), a Service gives back its ClusterIP and ports.
            if !meta::is_terminating(&object) {
                let name = meta::name(&object);
                let path = format!("{group_path}/namespaces/{namespace}/{plural}/{name}");
                context.client.delete_at(path, &object, None).await?;
            }
        }
    }
    Ok(empty)
}
