//! The command `kubectl exec` runs in a container. Containers are
//! processes in the pod's netns and the container's cgroup, so an exec is
//! one more such process, with the environment and working directory of
//! the container's main process: what runc's `exec` gives a container's
//! process, short of its namespaces.
use std::{
    fs, io,
    path::{Path, PathBuf},
};

use super::{
    cgroup,
    context::Config,
    netns,
    pod_key::PodKey,
    process::{self, Spec},
};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("container {container} is not running in pod {pod}")]
    NotRunning { pod: PodKey, container: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Where this node's containers are, to run commands in them.
#[derive(Debug, Clone)]
pub struct Containers {
    config: Config,
    pods_root: PathBuf,
}

impl Containers {
    pub fn new(config: &Config) -> Containers {
        Containers {
            config: config.clone(),
            pods_root: cgroup::pods_root(&config.cgroup),
        }
    }

    /// `argv` ready to run in `container` of `pod`, its stdio still to be
    /// chosen (it starts as none). The names are path components already
    /// checked by the caller.
    pub fn exec(
        &self,
        pod: &PodKey,
        container: &str,
        argv: Vec<String>,
    ) -> Result<tokio::process::Command, ExecError> {
        let cgroup = self.pods_root.join(pod.slug()).join(container);
        let main = main_process(&cgroup).ok_or_else(|| ExecError::NotRunning {
            pod: pod.clone(),
            container: container.to_owned(),
        })?;
        let spec = Spec {
            argv,
            env: environment(&main)?,
            working_dir: fs::read_link(main.join("cwd"))
                .ok()
                .map(|dir| dir.to_string_lossy().into_owned()),
            netns: netns::named_path(&self.config.netns_name(pod)),
            cgroup,
        };
        let (none, none_too) = (std::process::Stdio::null(), std::process::Stdio::null());
        Ok(process::command(&spec, none, none_too)?)
    }
}

/// `/proc/<pid>` of a process of the container's cgroup, if it runs.
fn main_process(cgroup: &Path) -> Option<PathBuf> {
    let procs = fs::read_to_string(cgroup.join("cgroup.procs")).ok()?;
    let pid: u32 = procs.lines().next()?.trim().parse().ok()?;
    Some(PathBuf::from(format!("/proc/{pid}")))
}

/// The environment a process was started with.
fn environment(process: &Path) -> io::Result<Vec<(String, String)>> {
    let environ = fs::read(process.join("environ"))?;
    Ok(environ
        .split(|byte| *byte == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (key, value) = entry.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect())
}
