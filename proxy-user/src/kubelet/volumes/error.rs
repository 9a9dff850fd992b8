//! Why a container's volumes are not ready, and the waiting reason each
//! case shows in the container's status.
use std::{io, path::PathBuf};

use super::token::TokenError;
use crate::kubelet::missing::MissingObject;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Missing(#[from] MissingObject),
    #[error("persistentvolumeclaim {namespace}/{name} is not bound to a volume yet")]
    Unbound { namespace: String, name: String },
    #[error(
        "persistentvolume {name} has neither spec.hostPath nor spec.local: skiff mounts only node paths"
    )]
    UnsupportedVolume { name: String },
    #[error("hostPath type check failed: {path} is not {expected}")]
    HostPathType { path: String, expected: String },
    #[error("volume {volume}: {why}")]
    Unsupported { volume: String, why: String },
    #[error("invalid {what} {name:?}")]
    BadName { what: &'static str, name: String },
    #[error("volumeMount {mount} refers to no volume of the pod")]
    NoSuchVolume { mount: String },
    #[error("invalid path {path:?} in volume {volume}: {why}")]
    BadPath {
        volume: String,
        path: String,
        why: &'static str,
    },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("reading through the API server: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl VolumeError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> VolumeError {
        let path = path.into();
        move |source| VolumeError::Io { path, source }
    }

    /// The container's waiting reason while this lasts: an object the pod
    /// names is missing or wrong (the kubelet's
    /// `CreateContainerConfigError`), a claim is still being bound
    /// or a ServiceAccount token not issued yet (`ContainerCreating`), or
    /// the node cannot make the mount.
    pub fn reason(&self) -> &'static str {
        match self {
            VolumeError::Missing(_)
            | VolumeError::BadName { .. }
            | VolumeError::NoSuchVolume { .. }
            | VolumeError::BadPath { .. }
            | VolumeError::Unsupported { .. }
            | VolumeError::UnsupportedVolume { .. } => "CreateContainerConfigError",
            VolumeError::Unbound { .. } | VolumeError::Token(_) => "ContainerCreating",
            VolumeError::HostPathType { .. } | VolumeError::Io { .. } | VolumeError::Api(_) => {
                "CreateContainerError"
            }
        }
    }
}
