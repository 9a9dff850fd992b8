//! The error the patch functions return.

/// Why a patch could not be applied. The REST layer answers all of these with
/// 400 Bad Request (or 422 when the patched object then fails validation),
/// but those [`PatchError::is_too_large`]: 413.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("invalid JSON patch: {0}")]
    InvalidJsonPatch(#[source] serde_json::Error),
    #[error("The allowed maximum operations in a JSON patch is {limit}, got {got}")]
    TooManyOperations { limit: usize, got: usize },
    #[error("the JSON patch makes the object larger than {limit} bytes")]
    TooLarge { limit: usize },
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

impl PatchError {
    /// The patch, or what it makes, is too large: kube-apiserver's 413.
    pub fn is_too_large(&self) -> bool {
        matches!(self, Self::TooManyOperations { .. } | Self::TooLarge { .. })
    }
}
