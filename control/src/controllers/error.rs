//! Why a controller's pass (or a leader election step) failed.

use super::client::ClientError;
use crate::store::StoreError;

/// Why a pass failed; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
