//! The error the patch functions return.

/// Why a patch could not be applied. The REST layer answers all of these with
/// 400 Bad Request (or 422 when the patched object then fails validation).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("invalid JSON patch: {0}")]
    InvalidJsonPatch(#[source] serde_json::Error),
    #[error("the JSON patch could not be applied: {0}")]
    JsonPatch(#[from] json_patch::PatchError),
    #[error("a strategic merge patch must be a JSON object")]
    NotAnObject,
    #[error("unknown patch directive {directive:?} at {path}")]
    UnknownDirective { directive: String, path: String },
    #[error("unknown value for $patch at {path}: {value}")]
    BadPatchType { value: String, path: String },
    #[error("{directive} at {path} must be a list")]
    DirectiveNotAList { directive: String, path: String },
    #[error("an element of the list at {path} does not contain declared merge key {key:?}")]
    MissingMergeKey { key: &'static str, path: String },
    #[error("an element of the list at {path} must be an object (merge key {key:?})")]
    ElementNotAnObject { key: &'static str, path: String },
}
