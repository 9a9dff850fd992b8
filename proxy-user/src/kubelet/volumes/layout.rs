//! Where a pod's volumes live on the node, as the kubelet lays them out:
//! `<state>/pods/<uid>/volumes/<plugin>/<volume>` for the volumes the
//! agent makes, and `<state>/pods/<uid>/volume-subpaths/<volume>/<container>/<index>`
//! for the bind mounts that pin a subPath. Every name that becomes a path
//! component is checked before anything is created.
use std::path::{Path, PathBuf};

use super::error::VolumeError;

/// The plugins whose volumes the agent keeps in the pod's directory
/// (hostPath and persistentVolumeClaim mount a node path directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    EmptyDir,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
}

impl Plugin {
    /// The directory name the kubelet gives the plugin.
    pub fn dir_name(self) -> &'static str {
        match self {
            Plugin::EmptyDir => "kubernetes.io~empty-dir",
            Plugin::ConfigMap => "kubernetes.io~configmap",
            Plugin::Secret => "kubernetes.io~secret",
            Plugin::DownwardApi => "kubernetes.io~downward-api",
            Plugin::Projected => "kubernetes.io~projected",
        }
    }
}

/// The directory all pods' volumes go below.
pub fn pods_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("pods")
}

/// One pod's directory, `<state>/pods/<uid>`.
#[derive(Debug, Clone)]
pub struct PodDir {
    root: PathBuf,
}

impl PodDir {
    pub fn new(state_dir: &Path, uid: &str) -> Result<PodDir, VolumeError> {
        check_uid(uid)?;
        Ok(PodDir {
            root: pods_dir(state_dir).join(uid),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// The volume's directory; `volume` is a checked DNS-1123 label.
    pub fn volume(&self, plugin: Plugin, volume: &str) -> PathBuf {
        self.volumes().join(plugin.dir_name()).join(volume)
    }

    pub fn subpaths(&self) -> PathBuf {
        self.root.join("volume-subpaths")
    }

    /// Where the `index`th volume mount of `container` pins its subPath.
    pub fn subpath(&self, volume: &str, container: &str, index: usize) -> PathBuf {
        self.subpaths()
            .join(volume)
            .join(container)
            .join(index.to_string())
    }
}

/// A pod uid names a directory: letters, digits and `-` only.
pub fn check_uid(uid: &str) -> Result<(), VolumeError> {
    let fine = !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if fine {
        Ok(())
    } else {
        Err(VolumeError::BadName {
            what: "pod uid",
            name: uid.to_owned(),
        })
    }
}

/// A volume or container name is a DNS-1123 label: at most 63 of
/// `[a-z0-9-]`, starting and ending with a letter or digit.
pub fn check_label(what: &'static str, name: &str) -> Result<(), VolumeError> {
    let bytes = name.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let fine = !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
        && bytes.first().is_some_and(alnum)
        && bytes.last().is_some_and(alnum);
    if fine {
        Ok(())
    } else {
        Err(VolumeError::BadName {
            what,
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in ["", "..", "a/b", "A", "-a", "a-", "a.b", &"a".repeat(64)] {
            assert!(check_label("volume", bad).is_err(), "{bad:?}");
        }
        for good in ["a", "config-1", "0x"] {
            check_label("volume", good).unwrap();
        }
        for bad in ["", "..", "a/b", "a.b"] {
            assert!(check_uid(bad).is_err(), "{bad:?}");
        }
        let dir = PodDir::new(Path::new("/s"), "1234-ab").unwrap();
        assert_eq!(
            dir.volume(Plugin::ConfigMap, "cfg"),
            Path::new("/s/pods/1234-ab/volumes/kubernetes.io~configmap/cfg")
        );
        assert_eq!(
            dir.subpath("data", "app", 2),
            Path::new("/s/pods/1234-ab/volume-subpaths/data/app/2")
        );
    }
}
