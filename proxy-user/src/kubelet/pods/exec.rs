//! The command `kubectl exec` runs in a container: `runc exec` into the
//! container `<namespace>_<pod>_<container>`, with the environment and
//! working directory of the container's process.
use super::{
    context::Config,
    oci::{self, Runtime},
    pod_key::PodKey,
};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("container {container} is not running in pod {pod}")]
    NotRunning { pod: PodKey, container: String },
    #[error("no command to run")]
    NoCommand,
}

/// This node's containers, to run commands in them.
#[derive(Debug, Clone)]
pub struct Containers {
    runtime: Runtime,
}

impl Containers {
    pub fn new(config: &Config) -> Containers {
        Containers {
            runtime: Runtime::new(&config.state_dir),
        }
    }

    /// `argv` ready to run in `container` of `pod`, on a terminal of the
    /// container's with `tty`; its stdio still to be chosen (stdin starts
    /// as none). The names are path components already checked by the
    /// caller.
    pub fn exec(
        &self,
        pod: &PodKey,
        container: &str,
        argv: &[String],
        tty: bool,
    ) -> Result<tokio::process::Command, ExecError> {
        if argv.is_empty() {
            return Err(ExecError::NoCommand);
        }
        let id = oci::container_id(&pod.namespace, &pod.name, container);
        let target = self
            .runtime
            .exec_target_of(&id)
            .ok_or_else(|| ExecError::NotRunning {
                pod: pod.clone(),
                container: container.to_owned(),
            })?;
        Ok(target.session(argv, tty))
    }
}
