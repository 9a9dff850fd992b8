//! `propagationPolicy: Orphan` (`kubectl delete --cascade=orphan`): before
//! an owner goes, its dependents drop their ownerReference to it, so the
//! garbage collector leaves them alone.

use serde_json::Value;

use super::Api;
use super::registry::RESOURCES;
use super::status::ApiError;
use crate::store::{ListRequest, StoreError, collection_prefix, object_key, resource_version_of};

/// `object` without the ownerReference to `uid`; `None` when it has none.
fn released(object: &Value, uid: &str) -> Option<Value> {
    let owners = object["metadata"]["ownerReferences"].as_array()?;
    if !owners.iter().any(|owner| owner["uid"] == uid) {
        return None;
    }
    let kept: Vec<Value> = owners
        .iter()
        .filter(|owner| owner["uid"] != uid)
        .cloned()
        .collect();
    let mut object = object.clone();
    if kept.is_empty() {
        object["metadata"]
            .as_object_mut()
            .map(|metadata| metadata.remove("ownerReferences"));
    } else {
        object["metadata"]["ownerReferences"] = Value::Array(kept);
    }
    Some(object)
}

impl Api {
    /// Removes the ownerReferences to `owner` from every object of its
    /// namespace (owners and dependents share one).
    pub(super) async fn orphan_dependents(&self, owner: &Value) -> Result<(), ApiError> {
        let uid = owner["metadata"]["uid"].as_str().unwrap_or_default();
        let Some(namespace) = owner["metadata"]["namespace"].as_str() else {
            return Ok(());
        };
        for resource in RESOURCES.iter().filter(|resource| resource.namespaced) {
            let prefix = collection_prefix(resource.storage, Some(namespace));
            let page = self
                .store
                .list(&prefix, ListRequest::default(), |object| {
                    released(object, uid).is_some()
                })
                .await
                .map_err(|error| ApiError::from_store(error, resource, ""))?;
            for dependent in page.items {
                let name = dependent["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let key = object_key(resource.storage, Some(namespace), &name);
                let mut current = dependent;
                // Compare-and-swap; on a conflict, again with what is there.
                while let Some(updated) = released(&current, uid) {
                    match self
                        .store
                        .update(&key, &updated, resource_version_of(&current))
                        .await
                    {
                        Ok(_) | Err(StoreError::NotFound { .. }) => break,
                        Err(StoreError::Conflict { .. }) => match self.store.get(&key).await {
                            Ok(latest) => current = latest,
                            Err(_) => break,
                        },
                        Err(error) => return Err(ApiError::from_store(error, resource, &name)),
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn drops_only_the_deleted_owner() {
        let object = json!({ "metadata": { "ownerReferences": [{ "uid": "a" }, { "uid": "b" }] } });
        let without_a = released(&object, "a").unwrap();
        assert_eq!(
            without_a["metadata"]["ownerReferences"],
            json!([{ "uid": "b" }])
        );
        let alone = released(&without_a, "b").unwrap();
        assert!(alone["metadata"].get("ownerReferences").is_none());
        assert!(released(&alone, "b").is_none());
    }
}
