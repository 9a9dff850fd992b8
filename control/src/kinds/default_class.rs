//! Picking the default among classes (StorageClasses, IngressClasses), as
//! the DefaultStorageClass and DefaultIngressClass admission plugins do.

use serde_json::Value;

/// The default class among `classes`: the newest one whose `annotation`
/// is `"true"` (by name when created together).
pub fn default_class<'c>(classes: &'c [Value], annotation: &str) -> Option<&'c str> {
    classes
        .iter()
        .filter(|class| class["metadata"]["annotations"][annotation] == "true")
        .max_by_key(|class| {
            (
                class["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default(),
                class["metadata"]["name"].as_str().unwrap_or_default(),
            )
        })
        .and_then(|class| class["metadata"]["name"].as_str())
}
