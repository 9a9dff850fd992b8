//! persistentVolumeClaim: the claim's bound PersistentVolume, whose node
//! path (`spec.hostPath.path` or `spec.local.path`) is mounted. A claim
//! not bound yet is waited for; binding is the control plane's.
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use super::error::VolumeError;
use crate::kubelet::missing::MissingObject;
use crate::kubelet::objects::{Kind, Objects};

/// The node path behind the claim `namespace/name`.
pub async fn node_path(
    objects: &impl Objects,
    namespace: &str,
    name: &str,
) -> Result<String, VolumeError> {
    let missing = || {
        VolumeError::from(MissingObject::object(
            "persistentvolumeclaim",
            namespace,
            name,
        ))
    };
    let claim = objects
        .get(Kind::Claim, namespace, name)
        .await?
        .ok_or_else(missing)?;
    let claim: PersistentVolumeClaim = serde_json::from_value(claim).map_err(|_| missing())?;
    let unbound = || VolumeError::Unbound {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    };
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    let volume = (claim.spec.as_ref())
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty() && phase == Some("Bound"))
        .ok_or_else(unbound)?;
    let stored = objects
        .get(Kind::Volume, "", &volume)
        .await?
        .ok_or_else(unbound)?;
    let pv: PersistentVolume = serde_json::from_value(stored).map_err(|_| unbound())?;
    let spec = pv.spec.unwrap_or_default();
    spec.host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .ok_or(VolumeError::UnsupportedVolume { name: volume })
}
