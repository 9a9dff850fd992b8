//! The patch flavours the Kubernetes API accepts on `PATCH`, as pure
//! functions on JSON documents: JSON patch (RFC 6902), JSON merge patch
//! (RFC 7386), the strategic merge patch `kubectl apply`/`edit` send, and
//! server-side apply with the managedFields it keeps.

mod error;
mod fieldset;
mod json;
mod managed;
mod schema;
mod strategic;
mod structured;

pub use error::PatchError;
pub use json::{MAX_DOCUMENT_BYTES, MAX_OPERATIONS, json_patch};
pub use managed::{
    ApplyError, Conflicts, ManagedFieldsError, Manager, Operation, Write,
    apply as server_side_apply, record_update,
};
pub use schema::{ListStrategy, list_strategy, merge_key};
pub use strategic::strategic_merge_patch;

/// The `Content-Type` of a server-side apply `PATCH`.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// Whether a `Content-Type` header value asks for server-side apply.
pub fn is_apply(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == APPLY_PATCH
}

use serde_json::Value;

/// The patch formats, as named by the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
}

impl PatchType {
    /// The patch type for a `Content-Type` header value (parameters such as
    /// `; charset=utf-8` are ignored). `None` means 415 Unsupported Media Type,
    /// or server-side apply (see [`is_apply`]), which is no patch of a document.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            _ => None,
        }
    }
}

/// Applies `patch` of the given type to `doc` in place; on error `doc` is
/// left unchanged.
pub fn apply(patch_type: PatchType, doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    match patch_type {
        PatchType::Json => json_patch(doc, patch),
        PatchType::Merge => {
            merge_patch(doc, patch);
            Ok(())
        }
        PatchType::StrategicMerge => strategic_merge_patch(doc, patch),
    }
}

/// RFC 7386 JSON merge patch: objects merge recursively, `null` deletes,
/// everything else (lists included) replaces. It cannot fail.
pub fn merge_patch(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types() {
        assert_eq!(
            PatchType::from_content_type("application/json-patch+json"),
            Some(PatchType::Json)
        );
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
            Some(PatchType::Merge)
        );
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json"),
            Some(PatchType::StrategicMerge)
        );
        assert_eq!(
            PatchType::from_content_type("application/apply-patch+yaml"),
            None
        );
        assert!(is_apply("application/apply-patch+yaml; charset=utf-8"));
        assert!(!is_apply("application/merge-patch+json"));
    }

    #[test]
    fn json_patch_applies_operations() {
        let mut doc = json!({"spec": {"ports": [{"port": 80}]}});
        let patch = json!([
            {"op": "replace", "path": "/spec/ports/0/port", "value": 8080},
            {"op": "add", "path": "/metadata", "value": {"labels": {"a": "b"}}}
        ]);
        apply(PatchType::Json, &mut doc, &patch).unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"ports": [{"port": 8080}]}, "metadata": {"labels": {"a": "b"}}})
        );
    }

    #[test]
    fn json_patch_failed_test_leaves_doc_unchanged() {
        let mut doc = json!({"a": 1});
        let patch = json!([
            {"op": "replace", "path": "/a", "value": 2},
            {"op": "test", "path": "/a", "value": 3}
        ]);
        let err = json_patch(&mut doc, &patch).unwrap_err();
        assert!(matches!(err, PatchError::JsonPatch(_)), "{err}");
        assert_eq!(doc, json!({"a": 1}));
    }

    #[test]
    fn json_patch_rejects_malformed_operations() {
        let mut doc = json!({});
        let err = json_patch(&mut doc, &json!({"op": "add"})).unwrap_err();
        assert!(matches!(err, PatchError::InvalidJsonPatch(_)), "{err}");
        let err = json_patch(&mut doc, &json!([{"op": "remove", "path": "/missing"}])).unwrap_err();
        assert!(matches!(err, PatchError::JsonPatch(_)), "{err}");
    }

    #[test]
    fn merge_patch_merges_and_deletes() {
        let mut doc =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"ports": [1, 2]}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"ports": [3]}});
        apply(PatchType::Merge, &mut doc, &patch).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "spec": {"ports": [3]}})
        );
    }
}
