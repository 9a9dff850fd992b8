//! Why encryption at rest failed.

/// Why a value could not be opened, or the configuration not loaded.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    #[error("unable to transform key {key:?}: {reason}")]
    Decrypt { key: String, reason: String },
}
