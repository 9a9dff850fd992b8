//! Pod volumes on this node: emptyDir (disk, or tmpfs for
//! `medium: Memory`), hostPath with its type checks, configMap, secret,
//! downwardAPI and projected (written with the kubelet's atomic writer and
//! refreshed every 10 s while the pod runs), and persistentVolumeClaim (the
//! bound PersistentVolume's node path). Each container gets a list of bind
//! mounts (`Mount`) for the runtime to put in its spec, with subPaths
//! pinned safely and readOnly applied. Volumes live under
//! `<state>/pods/<uid>/` (`layout`) and go with the pod (`remove_pod`).
mod atomic_writer;
mod claim;
pub mod downward;
mod empty_dir;
mod error;
#[cfg(test)]
mod fake_issuer;
mod host_path;
mod layout;
mod mounts;
mod pod;
mod projection;
mod refresher;
mod subpath;
mod token;

use std::{collections::HashSet, path::Path};

use tracing::warn;

pub use pod::{Mount, PodVolumes, remove_pod};
pub use refresher::{REFRESH_PERIOD, refresh_until_stopped};

/// Removes the volumes of pods that are no longer on this node (left by
/// an agent that stopped before it could clean up).
pub fn remove_orphans(state_dir: &Path, live: &HashSet<&str>) {
    let Ok(entries) = std::fs::read_dir(layout::pods_dir(state_dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        // Only pod uids name volume directories here; other entries
        // (the runtime's per-pod files, named `<namespace>.<name>`) are
        // not the volumes' to remove.
        if live.contains(uid.as_str()) || layout::check_uid(&uid).is_err() {
            continue;
        }
        if let Err(error) = remove_pod(state_dir, &uid) {
            warn!(%uid, %error, "removing a gone pod's volumes failed");
        }
    }
}
