//! Why a storage operation failed.

use skiff_etcd::kv::EtcdError;

use super::encryption::EncryptionError;

/// Why a storage operation failed. The API layer maps each to a `Status`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Etcd(EtcdError),
    #[error("{key} not found")]
    NotFound { key: String },
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    #[error(
        "the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict { key: String },
    #[error("{message}")]
    PreconditionFailed { message: String },
    #[error("revision {revision} has been compacted")]
    Compacted { revision: i64 },
    #[error("invalid continue token: {reason}")]
    InvalidContinue { reason: &'static str },
    #[error("failed to decode the value at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A value that does not decrypt: lists skip it, a read is a 500.
    #[error(transparent)]
    Encryption(#[from] EncryptionError),
    #[error("etcd canceled the watch: {reason}")]
    WatchCanceled { reason: String },
    #[error("etcd closed the watch stream")]
    WatchClosed,
}

impl StoreError {
    /// etcd is unreachable or has no leader: the API answers 503 with
    /// `Retry-After`, not 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Etcd(error) if error.is_unavailable())
    }

    /// etcd refused the write for its size (`--max-request-bytes`): the
    /// API answers 413, the client's object is too large, not a fault.
    pub fn is_too_large(&self) -> bool {
        matches!(self, Self::Etcd(error) if error.is_too_large())
    }
}

/// A read or watch below the compacted revision is its own error: the API
/// answers it with 410 Gone.
impl From<EtcdError> for StoreError {
    fn from(error: EtcdError) -> Self {
        match error {
            EtcdError::Compacted { revision } => Self::Compacted { revision },
            other => Self::Etcd(other),
        }
    }
}
