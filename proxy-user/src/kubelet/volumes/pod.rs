//! One pod's volumes: each is made the first time a container that
//! mounts it starts (so a container waits only for the objects its own
//! mounts need), and the mounts a container gets are listed for the
//! runtime. The refresher calls `refresh` to bring API-data volumes up to
//! date and to check emptyDir size limits.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use tokio::sync::Mutex;
use tracing::warn;

use super::{
    atomic_writer::{self, Payload},
    claim, empty_dir,
    error::VolumeError,
    host_path,
    layout::{Plugin, PodDir, check_label},
    mounts,
    projection::{self, Tokens},
    subpath,
    token::{PodTokens, TokenIssuer},
};
use crate::kubelet::objects::Objects;
use crate::kubelet::pods::cgroup::memory_bytes;

/// A bind mount a container gets: `source` on the node at `destination`
/// in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    pub source: PathBuf,
    pub read_only: bool,
}

/// Something about the pod's volumes worth an Event (Warning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub reason: &'static str,
    pub message: String,
}

/// What a made volume needs from the refresher.
#[derive(Debug)]
enum Upkeep {
    None,
    /// Re-projected from the API every refresh.
    Projected,
    /// An emptyDir on disk with a sizeLimit; `over` once reported.
    SizeLimit {
        bytes: u64,
        over: bool,
    },
}

#[derive(Debug)]
struct Made {
    source: PathBuf,
    read_only: bool,
    upkeep: Upkeep,
}

pub struct PodVolumes {
    state_dir: PathBuf,
    pod: Pod,
    made: Mutex<BTreeMap<String, Made>>,
    tokens: PodTokens,
}

impl PodVolumes {
    pub fn new(state_dir: &Path, pod: Pod) -> PodVolumes {
        PodVolumes {
            state_dir: state_dir.to_owned(),
            pod,
            made: Mutex::new(BTreeMap::new()),
            tokens: PodTokens::default(),
        }
    }

    /// The pod's directory; a uid that could leave `pods/` is refused
    /// (and with it every container that mounts a volume).
    fn dir(&self) -> Result<PodDir, VolumeError> {
        let uid = self.pod.metadata.uid.as_deref().unwrap_or_default();
        PodDir::new(&self.state_dir, uid)
    }

    fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or_default()
    }

    fn volume(&self, name: &str) -> Option<&Volume> {
        (self.pod.spec.iter())
            .flat_map(|s| s.volumes.iter().flatten())
            .find(|v| v.name == name)
    }

    /// The mounts `container` gets, making the volumes it mounts first.
    /// The notices are for Events (parts of a volume left out).
    pub async fn mounts_for(
        &self,
        objects: &impl Objects,
        issuer: &impl TokenIssuer,
        container: &Container,
    ) -> Result<(Vec<Mount>, Vec<Notice>), VolumeError> {
        let mounts = container.volume_mounts.as_deref().unwrap_or_default();
        if mounts.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let dir = self.dir()?;
        check_label("container name", &container.name)?;
        let mut made = self.made.lock().await;
        let mut notices = Vec::new();
        let mut out = Vec::new();
        for (index, wanted) in mounts.iter().enumerate() {
            let volume = self
                .volume(&wanted.name)
                .ok_or_else(|| VolumeError::NoSuchVolume {
                    mount: wanted.name.clone(),
                })?;
            if !wanted.mount_path.starts_with('/') {
                return Err(VolumeError::BadPath {
                    volume: volume.name.clone(),
                    path: wanted.mount_path.clone(),
                    why: "a mountPath must be absolute",
                });
            }
            if wanted
                .sub_path_expr
                .as_deref()
                .is_some_and(|e| !e.is_empty())
            {
                return Err(VolumeError::Unsupported {
                    volume: volume.name.clone(),
                    why: "subPathExpr is not supported by skiff".to_owned(),
                });
            }
            if !made.contains_key(&volume.name) {
                let (volume_made, skipped) = self.make(objects, issuer, &dir, volume).await?;
                notices.extend(skipped.into_iter().map(|message| Notice {
                    reason: "VolumeSourceSkipped",
                    message,
                }));
                made.insert(volume.name.clone(), volume_made);
            }
            let volume_made = &made[&volume.name];
            let source = match wanted.sub_path.as_deref().filter(|s| !s.is_empty()) {
                None => volume_made.source.clone(),
                Some(sub_path) => {
                    let opened = subpath::open(&volume_made.source, &volume.name, sub_path)?;
                    let pinned = dir.subpath(&volume.name, &container.name, index);
                    subpath::pin(&opened, &pinned)?;
                    pinned
                }
            };
            out.push(Mount {
                destination: wanted.mount_path.clone(),
                source,
                read_only: wanted.read_only == Some(true) || volume_made.read_only,
            });
        }
        Ok((out, notices))
    }

    async fn make(
        &self,
        objects: &impl Objects,
        issuer: &impl TokenIssuer,
        dir: &PodDir,
        volume: &Volume,
    ) -> Result<(Made, Vec<String>), VolumeError> {
        let name = &volume.name;
        check_label("volume name", name)?;
        let made = |source: PathBuf, read_only: bool, upkeep: Upkeep| Made {
            source,
            read_only,
            upkeep,
        };
        if let Some(empty) = &volume.empty_dir {
            let dir = dir.volume(Plugin::EmptyDir, name);
            let memory = empty.medium.as_deref() == Some("Memory");
            let limit = (empty.size_limit.as_ref())
                .map(|q| {
                    memory_bytes(&q.0).ok_or_else(|| VolumeError::Unsupported {
                        volume: name.clone(),
                        why: format!("unreadable sizeLimit {}", q.0),
                    })
                })
                .transpose()?;
            let mode = empty.mode.map_or(0o777, |m| (m as u32) & 0o7777);
            empty_dir::prepare(&dir, memory, mode, limit)?;
            let upkeep = match limit {
                Some(bytes) if !memory => Upkeep::SizeLimit { bytes, over: false },
                _ => Upkeep::None,
            };
            return Ok((made(dir, false, upkeep), Vec::new()));
        }
        if let Some(host) = &volume.host_path {
            host_path::prepare(&host.path, host.type_.as_deref().unwrap_or_default())?;
            return Ok((
                made(host.path.clone().into(), false, Upkeep::None),
                Vec::new(),
            ));
        }
        if let Some(claim) = &volume.persistent_volume_claim {
            let path = claim::node_path(objects, self.namespace(), &claim.claim_name).await?;
            host_path::prepare(&path, "DirectoryOrCreate")?;
            let read_only = claim.read_only == Some(true);
            return Ok((made(path.into(), read_only, Upkeep::None), Vec::new()));
        }
        let plugin = self.projected_plugin(volume)?;
        let dir = dir.volume(plugin, name);
        // As the kubelet keeps them: Secrets (and projections, which may
        // hold them) only in memory.
        let memory = matches!(plugin, Plugin::Secret | Plugin::Projected);
        empty_dir::prepare(&dir, memory, 0o755, None)?;
        let (payload, skipped) = self.payload(objects, issuer, volume).await?;
        atomic_writer::write(&dir, name, &payload)?;
        Ok((made(dir, true, Upkeep::Projected), skipped))
    }

    fn projected_plugin(&self, volume: &Volume) -> Result<Plugin, VolumeError> {
        if volume.config_map.is_some() {
            Ok(Plugin::ConfigMap)
        } else if volume.secret.is_some() {
            Ok(Plugin::Secret)
        } else if volume.downward_api.is_some() {
            Ok(Plugin::DownwardApi)
        } else if volume.projected.is_some() {
            Ok(Plugin::Projected)
        } else {
            Err(VolumeError::Unsupported {
                volume: volume.name.clone(),
                why: "skiff supports emptyDir, hostPath, configMap, secret, downwardAPI, projected and persistentVolumeClaim volumes".to_owned(),
            })
        }
    }

    /// The files an API-data volume holds now.
    async fn payload(
        &self,
        objects: &impl Objects,
        issuer: &impl TokenIssuer,
        volume: &Volume,
    ) -> Result<(Payload, Vec<String>), VolumeError> {
        let namespace = self.namespace();
        if let Some(source) = &volume.config_map {
            return Ok((
                projection::config_map(objects, namespace, source).await?,
                Vec::new(),
            ));
        }
        if let Some(source) = &volume.secret {
            return Ok((
                projection::secret(objects, namespace, source).await?,
                Vec::new(),
            ));
        }
        if let Some(source) = &volume.downward_api {
            let files = source.items.as_deref().unwrap_or_default();
            let payload =
                projection::downward_api(&self.pod, &volume.name, files, source.default_mode)?;
            return Ok((payload, Vec::new()));
        }
        match &volume.projected {
            Some(source) => {
                let tokens = Tokens {
                    issuer,
                    held: &self.tokens,
                };
                projection::projected(objects, &tokens, &self.pod, &volume.name, source).await
            }
            None => Ok((Payload::new(), Vec::new())),
        }
    }

    /// Rewrites API-data volumes whose objects changed (a volume whose
    /// object went away keeps its files, as the kubelet's do) and checks
    /// disk emptyDirs against their sizeLimit, once over it reported.
    pub async fn refresh(&self, objects: &impl Objects, issuer: &impl TokenIssuer) -> Vec<Notice> {
        let mut made = self.made.lock().await;
        let mut notices = Vec::new();
        for (name, volume_made) in made.iter_mut() {
            let Some(volume) = self.volume(name) else {
                continue;
            };
            match &mut volume_made.upkeep {
                Upkeep::None => {}
                Upkeep::Projected => {
                    let written =
                        (self.payload(objects, issuer, volume).await).and_then(|(payload, _)| {
                            atomic_writer::write(&volume_made.source, name, &payload)
                        });
                    if let Err(error) = written {
                        let pod = self.pod.metadata.name.as_deref().unwrap_or_default();
                        warn!(namespace = %self.namespace(), %pod, volume = %name, %error, "refreshing a volume failed; it keeps its files");
                    }
                }
                Upkeep::SizeLimit { bytes, over } => {
                    let used = empty_dir::usage(&volume_made.source).unwrap_or_default();
                    if used > *bytes && !*over {
                        notices.push(Notice {
                            reason: "SizeLimitExceeded",
                            message: format!(
                                "emptyDir volume {name} uses {used} bytes, over its sizeLimit of {bytes} bytes"
                            ),
                        });
                    }
                    *over = used > *bytes;
                }
            }
        }
        notices
    }
}

/// Removes a pod's volume directory: the mounts in it first (subPath
/// pins, tmpfs volumes), then the tree, never following a symlink. A mount
/// that will not go keeps the whole directory, so nothing mounted is
/// deleted through it.
pub fn remove_pod(state_dir: &Path, uid: &str) -> Result<(), VolumeError> {
    let dir = PodDir::new(state_dir, uid)?;
    if std::fs::symlink_metadata(dir.root()).is_err() {
        return Ok(());
    }
    for place in mount_places(&dir.subpaths(), 3).chain(mount_places(&dir.volumes(), 2)) {
        mounts::unmount_all(&place).map_err(VolumeError::io(&place))?;
    }
    std::fs::remove_dir_all(dir.root()).map_err(VolumeError::io(dir.root()))
}

/// The paths `depth` directories below `root` (only real directories are
/// walked, never a symlink).
fn mount_places(root: &Path, depth: usize) -> impl Iterator<Item = PathBuf> {
    let mut level = vec![root.to_owned()];
    for _ in 0..depth {
        level = level
            .iter()
            .filter(|dir| std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()))
            .filter_map(|dir| std::fs::read_dir(dir).ok())
            .flat_map(|entries| entries.flatten().map(|e| e.path()))
            .collect();
    }
    level.into_iter()
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::PermissionsExt as _, sync::Mutex as Shared};

    use serde_json::{Value, json};

    use super::{super::fake_issuer::Fake, *};
    use crate::kubelet::objects::Kind;
    use skiff_etcd::keys::{
        CONFIG_MAPS, PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, SECRETS, object_key,
    };

    /// The API's objects by their etcd keys, changed by the test between
    /// calls.
    #[derive(Default)]
    struct Fixed(Shared<BTreeMap<String, Value>>);

    impl Fixed {
        fn put(&self, key: &str, object: Value) {
            self.0.lock().unwrap().insert(key.to_owned(), object);
        }
    }

    impl Objects for Fixed {
        async fn get(
            &self,
            kind: Kind,
            namespace: &str,
            name: &str,
        ) -> Result<Option<Value>, kube::Error> {
            let key = match kind {
                Kind::ConfigMap => object_key(CONFIG_MAPS, Some(namespace), name),
                Kind::Secret => object_key(SECRETS, Some(namespace), name),
                Kind::Claim => object_key(PERSISTENT_VOLUME_CLAIMS, Some(namespace), name),
                Kind::Volume => object_key(PERSISTENT_VOLUMES, None, name),
            };
            Ok(self.0.lock().unwrap().get(&key).cloned())
        }
    }

    fn pod(volumes: Value, mounts: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "shop", "uid": "0f0e-11", "labels": { "app": "web" } },
            "spec": {
                "volumes": volumes,
                "containers": [{ "name": "app", "volumeMounts": mounts }]
            }
        }))
        .unwrap()
    }

    fn issuer() -> Fake {
        Fake::new(k8s_openapi::jiff::Timestamp::now())
    }

    fn container(pod: &Pod) -> Container {
        pod.spec.as_ref().unwrap().containers[0].clone()
    }

    /// Removes the pod's directory (and its mounts) whatever the test did.
    struct Remove<'a>(&'a Path, &'a str);

    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = remove_pod(self.0, self.1);
        }
    }

    #[tokio::test]
    async fn api_data_volumes_wait_for_their_objects_and_follow_updates() {
        let state = tempfile::tempdir().unwrap();
        let _remove = Remove(state.path(), "0f0e-11");
        let pod = pod(
            json!([
                { "name": "cfg", "configMap": { "name": "settings", "items": [{ "key": "mode", "path": "conf/mode" }] } },
                { "name": "creds", "secret": { "secretName": "token", "defaultMode": 0o400 } },
                { "name": "info", "downwardAPI": { "items": [{ "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } }] } },
                { "name": "scratch", "emptyDir": {} }
            ]),
            json!([
                { "name": "cfg", "mountPath": "/etc/app" },
                { "name": "creds", "mountPath": "/run/creds" },
                { "name": "info", "mountPath": "/etc/info" },
                { "name": "scratch", "mountPath": "/data", "subPath": "logs/app" },
                { "name": "scratch", "mountPath": "/all", "readOnly": true }
            ]),
        );
        let objects = Fixed::default();
        let volumes = PodVolumes::new(state.path(), pod.clone());
        let error = volumes
            .mounts_for(&objects, &issuer(), &container(&pod))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "configmap shop/settings not found");
        assert_eq!(error.reason(), "CreateContainerConfigError");

        objects.put(
            "/registry/configmaps/shop/settings",
            json!({ "data": { "mode": "fast", "other": "x" } }),
        );
        objects.put(
            "/registry/secrets/shop/token",
            json!({ "data": { "key": "c2VjcmV0" } }),
        );
        let (mounts, notices) = volumes
            .mounts_for(&objects, &issuer(), &container(&pod))
            .await
            .unwrap();
        assert!(notices.is_empty());
        let at = |destination: &str| {
            mounts
                .iter()
                .find(|m| m.destination == destination)
                .unwrap()
                .clone()
        };
        assert!(at("/etc/app").read_only && at("/run/creds").read_only && at("/all").read_only);
        assert!(!at("/data").read_only);
        assert_eq!(
            fs::read_to_string(at("/etc/app").source.join("conf/mode")).unwrap(),
            "fast"
        );
        assert!(
            !at("/etc/app").source.join("other").exists(),
            "only the items asked for"
        );
        let key = at("/run/creds").source.join("key");
        assert_eq!(fs::read_to_string(&key).unwrap(), "secret");
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert!(
            mounts::is_mount_point(&at("/run/creds").source).unwrap(),
            "secrets stay in memory"
        );
        assert_eq!(
            fs::read_to_string(at("/etc/info").source.join("labels")).unwrap(),
            "app=\"web\""
        );
        let pinned = at("/data").source;
        assert!(mounts::is_mount_point(&pinned).unwrap());
        fs::write(pinned.join("out.log"), "hello").unwrap();
        assert_eq!(
            fs::read_to_string(at("/all").source.join("logs/app/out.log")).unwrap(),
            "hello"
        );

        objects.put(
            "/registry/configmaps/shop/settings",
            json!({ "data": { "mode": "slow" } }),
        );
        assert!(volumes.refresh(&objects, &issuer()).await.is_empty());
        assert_eq!(
            fs::read_to_string(at("/etc/app").source.join("conf/mode")).unwrap(),
            "slow"
        );

        remove_pod(state.path(), "0f0e-11").unwrap();
        assert!(!state.path().join("pods/0f0e-11").exists());
    }

    #[tokio::test]
    async fn claims_wait_for_binding_and_mount_the_volume_path() {
        let state = tempfile::tempdir().unwrap();
        let _remove = Remove(state.path(), "0f0e-11");
        let pod = pod(
            json!([{ "name": "data", "persistentVolumeClaim": { "claimName": "db" } }]),
            json!([{ "name": "data", "mountPath": "/var/lib/db" }]),
        );
        let objects = Fixed::default();
        let claim = "/registry/persistentvolumeclaims/shop/db";
        objects.put(
            claim,
            json!({ "spec": {}, "status": { "phase": "Pending" } }),
        );
        let volumes = PodVolumes::new(state.path(), pod.clone());
        let error = volumes
            .mounts_for(&objects, &issuer(), &container(&pod))
            .await
            .unwrap_err();
        assert_eq!(error.reason(), "ContainerCreating");
        assert!(error.to_string().contains("shop/db"), "{error}");

        let path = state.path().join("pv-1");
        objects.put(
            claim,
            json!({ "spec": { "volumeName": "pv-1" }, "status": { "phase": "Bound" } }),
        );
        objects.put(
            "/registry/persistentvolumes/pv-1",
            json!({ "spec": { "local": { "path": path } } }),
        );
        let (mounts, _) = volumes
            .mounts_for(&objects, &issuer(), &container(&pod))
            .await
            .unwrap();
        assert_eq!(
            mounts,
            [Mount {
                destination: "/var/lib/db".into(),
                source: path.clone(),
                read_only: false
            }]
        );
        assert!(path.is_dir());
    }

    #[tokio::test]
    async fn bad_mounts_are_refused_and_unsupported_sources_reported() {
        let state = tempfile::tempdir().unwrap();
        let _remove = Remove(state.path(), "0f0e-11");
        let objects = Fixed::default();
        for (volumes, mounts, expected) in [
            (
                json!([{ "name": "a", "emptyDir": {} }]),
                json!([{ "name": "b", "mountPath": "/x" }]),
                "volumeMount b refers to no volume of the pod",
            ),
            (
                json!([{ "name": "a", "emptyDir": {} }]),
                json!([{ "name": "a", "mountPath": "/x", "subPath": "../../etc" }]),
                "must not contain '..'",
            ),
            (
                json!([{ "name": "a", "emptyDir": {} }]),
                json!([{ "name": "a", "mountPath": "x" }]),
                "must be absolute",
            ),
            (
                json!([{ "name": "A/..", "emptyDir": {} }]),
                json!([{ "name": "A/..", "mountPath": "/x" }]),
                "invalid volume name",
            ),
            (
                json!([{ "name": "h", "hostPath": { "path": "/proc/self/status", "type": "Directory" } }]),
                json!([{ "name": "h", "mountPath": "/x" }]),
                "/proc/self/status is not a directory",
            ),
        ] {
            let pod = pod(volumes, mounts);
            let error = PodVolumes::new(state.path(), pod.clone())
                .mounts_for(&objects, &issuer(), &container(&pod))
                .await
                .unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
        let pod = pod(
            json!([{ "name": "p", "projected": { "sources": [
                { "clusterTrustBundle": { "path": "bundle" } },
                { "downwardAPI": { "items": [{ "path": "name", "fieldRef": { "fieldPath": "metadata.name" } }] } }
            ] } }]),
            json!([{ "name": "p", "mountPath": "/var/run/p" }]),
        );
        let (mounts, notices) = PodVolumes::new(state.path(), pod.clone())
            .mounts_for(&objects, &issuer(), &container(&pod))
            .await
            .unwrap();
        assert_eq!(notices.len(), 1);
        assert!(
            notices[0].message.contains("clusterTrustBundle"),
            "{notices:?}"
        );
        assert_eq!(
            fs::read_to_string(mounts[0].source.join("name")).unwrap(),
            "web"
        );
    }

    #[tokio::test]
    async fn a_projected_token_is_written_and_kept_while_fresh() {
        let state = tempfile::tempdir().unwrap();
        let _remove = Remove(state.path(), "0f0e-11");
        let pod = pod(
            json!([{ "name": "api", "projected": { "sources": [
                { "serviceAccountToken": { "path": "token", "expirationSeconds": 3600 } }
            ] } }]),
            json!([{ "name": "api", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount" }]),
        );
        let objects = Fixed::default();
        let fake = issuer();
        let volumes = PodVolumes::new(state.path(), pod.clone());
        let (mounts, notices) = volumes
            .mounts_for(&objects, &fake, &container(&pod))
            .await
            .unwrap();
        assert!(notices.is_empty(), "{notices:?}");
        let token = mounts[0].source.join("token");
        assert_eq!(fs::read_to_string(&token).unwrap(), "t1");
        let mode = fs::metadata(&token).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o644);
        assert!(volumes.refresh(&objects, &fake).await.is_empty());
        assert_eq!(fs::read_to_string(&token).unwrap(), "t1");
        assert_eq!(fake.asked.lock().unwrap().len(), 1, "a fresh token is kept");
    }

    #[tokio::test]
    async fn a_disk_empty_dir_over_its_limit_is_reported_once() {
        let state = tempfile::tempdir().unwrap();
        let pod = pod(
            json!([{ "name": "scratch", "emptyDir": { "sizeLimit": "64Ki" } }]),
            json!([{ "name": "scratch", "mountPath": "/scratch" }]),
        );
        let objects = Fixed::default();
        let volumes = PodVolumes::new(state.path(), pod.clone());
        let (mounts, _) = volumes
            .mounts_for(&objects, &issuer(), &container(&pod))
            .await
            .unwrap();
        assert!(volumes.refresh(&objects, &issuer()).await.is_empty());
        fs::write(mounts[0].source.join("big"), vec![1u8; 1 << 20]).unwrap();
        let notices = volumes.refresh(&objects, &issuer()).await;
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].reason, "SizeLimitExceeded");
        assert!(notices[0].message.contains("scratch"), "{notices:?}");
        assert!(
            volumes.refresh(&objects, &issuer()).await.is_empty(),
            "reported once"
        );
    }
}
