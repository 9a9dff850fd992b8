//! Containers run by runc from the node's image store: the image's layers
//! under an overlay (`rootfs`), a runtime spec from oci-spec (`spec`,
//! `user`), the pod's shared files and namespaces (`pod_files`), and a
//! monitor process per container that survives agent restarts and
//! records the real exit code (`monitor`, `runc`, `bundle`).
mod bundle;
pub mod monitor;
pub mod pod_files;
mod rootfs;
pub mod runc;
pub mod spec;
pub mod user;

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::Duration,
};

use oci_spec::image::ImageConfiguration;
use tracing::warn;

use self::{
    bundle::{Bundle, containers_dir},
    monitor::{Exit, Monitor},
    pod_files::PodFiles,
    runc::{ExecTarget, Runc},
    spec::{BindMount, Inputs, Limits, Security},
    user::Wanted,
};
use super::cgroup;
use crate::kubelet::images::{self, Runnable};

/// How long runc gets to report a started container as running.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a container did not start, as its waiting reason tells.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `ErrImageNeverPull`: retried, so importing the image starts it.
    #[error(
        "image {0:?} is not in the node's image store (no registry is pulled from): import it with `skiff-agent images import FILE`"
    )]
    ImageMissing(String),
    /// `CreateContainerConfigError`: the pod asks for what cannot be.
    #[error("{0}")]
    Config(String),
    /// `CreateContainerError`: the node failed.
    #[error("{0}")]
    Create(String),
    /// A volume is not ready (its waiting reason: a missing object,
    /// a claim being bound, a hostPath mismatch): retried.
    #[error("{message}")]
    Volume {
        reason: &'static str,
        message: String,
    },
}

/// The image's defaults for a container (`Entrypoint`, `Cmd`, `Env`,
/// `WorkingDir`, `User`), which the pod's fields override.
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: String,
}

impl ImageDefaults {
    pub fn of(config: &ImageConfiguration) -> ImageDefaults {
        let Some(config) = config.config() else {
            return ImageDefaults::default();
        };
        let env = (config.env().iter().flatten())
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        ImageDefaults {
            entrypoint: config.entrypoint().clone().unwrap_or_default(),
            cmd: config.cmd().clone().unwrap_or_default(),
            env,
            working_dir: config.working_dir().clone().filter(|d| !d.is_empty()),
            user: config.user().clone().unwrap_or_default(),
        }
    }
}

/// One start of a container: the process, where it runs, and how.
pub struct Launch<'a> {
    pub id: &'a str,
    pub image: &'a Runnable,
    pub image_user: &'a str,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    pub hostname: String,
    pub pod_files: &'a PodFiles,
    pub netns: PathBuf,
    /// The container's cgroup v2 directory.
    pub cgroup: &'a Path,
    pub log: &'a Path,
    pub wanted: Wanted,
    pub security: Security,
    pub limits: Limits,
    /// Volumes, after the pod's /etc files.
    pub mounts: Vec<BindMount>,
}

/// A started (or adopted) container.
pub struct Started {
    pub monitor: Monitor,
    pub exec: ExecTarget,
}

/// This node's container runtime.
#[derive(Debug, Clone)]
pub struct Runtime {
    runc: Runc,
    state_dir: PathBuf,
}

impl Runtime {
    pub fn new(state_dir: &Path) -> Runtime {
        Runtime {
            runc: Runc::new(state_dir),
            state_dir: state_dir.to_owned(),
        }
    }

    pub fn pod_files(&self, slug: &str) -> PodFiles {
        PodFiles::new(&self.state_dir, slug)
    }

    /// The image `reference` names, unpacked.
    pub async fn image(&self, reference: &str) -> Result<Runnable, StartError> {
        let state_dir = self.state_dir.clone();
        let wanted = reference.to_owned();
        let found = tokio::task::spawn_blocking(move || images::runnable(&state_dir, &wanted))
            .await
            .map_err(|e| StartError::Create(e.to_string()))?;
        match found {
            Ok(Some(image)) => Ok(image),
            Ok(None) => Err(StartError::ImageMissing(reference.to_owned())),
            Err(error) => Err(StartError::Create(format!("{error:#}"))),
        }
    }

    /// Prepares the bundle, starts the container's monitor and waits until
    /// runc runs the container.
    pub async fn start(&self, launch: Launch<'_>) -> Result<Started, StartError> {
        let id = launch.id;
        let bundle = Bundle::new(&self.state_dir, id);
        self.clean(id).await;
        for stale in [bundle.exit_file(), bundle.monitor_pid()] {
            match fs::remove_file(&stale) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    return Err(StartError::Create(format!(
                        "clearing the last run's files: {error}"
                    )));
                }
                _ => {}
            }
        }
        let (spec, mut monitor) = match self.prepare(&launch, &bundle) {
            Ok(prepared) => prepared,
            Err(error) => {
                self.clean(id).await;
                return Err(error);
            }
        };
        // Probes and hooks need runc to know the container; a container
        // that fails at once ends its monitor, which the caller sees.
        let running = async {
            while self.runc.status(id).await.as_deref() != Some("running") {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(START_TIMEOUT, running) => {}
            _ = monitor.wait(&bundle) => {}
        }
        Ok(Started {
            exec: self.exec_target(id, spec.process().as_ref()),
            monitor,
        })
    }

    /// Mounts the rootfs, writes config.json and starts the monitor.
    fn prepare(
        &self,
        launch: &Launch<'_>,
        bundle: &Bundle,
    ) -> Result<(oci_spec::runtime::Spec, Monitor), StartError> {
        let create =
            |what: &str, e: &dyn std::fmt::Display| StartError::Create(format!("{what}: {e}"));
        rootfs::mount(bundle, &launch.image.layers)
            .map_err(|e| create("mounting the image's layers", &e))?;
        let spec = self.spec(launch, bundle)?;
        spec.save(bundle.config())
            .map_err(|e| create("writing config.json", &e))?;
        let monitor = monitor::spawn(&self.runc, bundle, launch.id, launch.log)
            .map_err(|e| create("starting the container monitor", &e))?;
        Ok((spec, monitor))
    }

    fn spec(
        &self,
        launch: &Launch<'_>,
        bundle: &Bundle,
    ) -> Result<oci_spec::runtime::Spec, StartError> {
        let identity = user::resolve(&bundle.rootfs(), launch.image_user, &launch.wanted)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let cgroups_path = cgroup::v2_relative(launch.cgroup).ok_or_else(|| {
            StartError::Create(format!(
                "{} is not below a cgroup v2 mount",
                launch.cgroup.display()
            ))
        })?;
        let mut mounts = launch.pod_files.mounts();
        mounts.extend(launch.mounts.iter().cloned());
        let inputs = Inputs {
            argv: launch.argv.clone(),
            env: (launch.env.iter())
                .map(|(name, value)| format!("{name}={value}"))
                .collect(),
            cwd: launch.cwd.clone(),
            identity,
            hostname: launch.hostname.clone(),
            netns: launch.netns.clone(),
            ipc_ns: launch.pod_files.ipc_ns(),
            uts_ns: launch.pod_files.uts_ns(),
            cgroups_path,
            security: launch.security.clone(),
            limits: launch.limits.clone(),
            mounts,
        };
        spec::build(&inputs).map_err(|e| StartError::Config(e.to_string()))
    }

    fn exec_target(&self, id: &str, process: Option<&oci_spec::runtime::Process>) -> ExecTarget {
        ExecTarget {
            runc: self.runc.clone(),
            id: id.to_owned(),
            env: process.and_then(|p| p.env().clone()).unwrap_or_default(),
            cwd: process.map_or_else(|| "/".to_owned(), |p| p.cwd().display().to_string()),
        }
    }

    /// How `runc exec` reaches container `id`, if it was created here.
    pub fn exec_target_of(&self, id: &str) -> Option<ExecTarget> {
        let bundle = Bundle::new(&self.state_dir, id);
        let spec = oci_spec::runtime::Spec::load(bundle.config()).ok()?;
        Some(self.exec_target(id, spec.process().as_ref()))
    }

    /// The container an earlier agent started, if its monitor still runs
    /// or left an exit code.
    pub fn adopt(&self, id: &str) -> Option<Started> {
        let bundle = Bundle::new(&self.state_dir, id);
        let monitor = Monitor::adopt(&bundle)?;
        let spec = oci_spec::runtime::Spec::load(bundle.config()).ok();
        let process = spec.as_ref().and_then(|s| s.process().as_ref());
        Some(Started {
            exec: self.exec_target(id, process),
            monitor,
        })
    }

    /// Waits for the container to end.
    pub async fn wait(&self, id: &str, monitor: &mut Monitor) -> Exit {
        monitor.wait(&Bundle::new(&self.state_dir, id)).await
    }

    /// SIGTERM, `grace`, SIGKILL; returns how the container ended.
    pub async fn terminate(&self, id: &str, monitor: &mut Monitor, grace: Duration) -> Exit {
        let bundle = Bundle::new(&self.state_dir, id);
        if let Err(error) = self.runc.kill(id, "TERM").await {
            warn!(container = id, %error, "SIGTERM failed");
        }
        match tokio::time::timeout(grace, monitor.wait(&bundle)).await {
            Ok(exit) => exit,
            Err(_) => {
                if let Err(error) = self.runc.kill(id, "KILL").await {
                    warn!(container = id, %error, "SIGKILL failed");
                }
                monitor.wait(&bundle).await
            }
        }
    }

    /// Removes what runc and the overlay keep of the container's last run
    /// (the exit code stays until the next start).
    pub async fn clean(&self, id: &str) {
        if let Err(error) = self.runc.delete(id).await {
            warn!(container = id, %error, "deleting the runc container failed");
        }
        if let Err(error) = rootfs::remove(&Bundle::new(&self.state_dir, id)) {
            warn!(container = id, %error, "removing the container's rootfs failed");
        }
    }

    /// Removes every container of the pod whose ids start `prefix`, and
    /// the pod's files.
    pub async fn remove_pod(&self, prefix: &str, pod_files: &PodFiles) {
        let containers = containers_dir(&self.state_dir);
        let ids: Vec<String> = fs::read_dir(&containers)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|id| id.starts_with(prefix))
            .collect();
        for id in ids {
            self.clean(&id).await;
            if let Err(error) = fs::remove_dir_all(containers.join(&id)) {
                warn!(container = id, %error, "removing the container's directory failed");
            }
        }
        if let Err(error) = pod_files.remove() {
            warn!(%error, "removing the pod's files failed");
        }
    }
}

/// The container id runc knows a pod's container by:
/// `<namespace>_<pod>_<container>` (DNS names hold no `_`).
pub fn container_id(namespace: &str, pod: &str, container: &str) -> String {
    format!("{}{container}", pod_prefix(namespace, pod))
}

pub fn pod_prefix(namespace: &str, pod: &str) -> String {
    format!("{namespace}_{pod}_")
}
