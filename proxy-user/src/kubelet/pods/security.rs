//! The pod's and container's securityContext as the runtime takes it
//! (container settings over the pod's), and the pod fields this node
//! refuses rather than silently ignores.
use k8s_openapi::api::core::v1::{Container, Pod};

use super::oci::{spec::Security, user::Wanted};

/// A pod asking for the node's namespaces or one PID namespace for all
/// its containers cannot run here: the error names the field.
pub fn refuse_unsupported(pod: &Pod) -> Result<(), String> {
    let Some(spec) = &pod.spec else {
        return Ok(());
    };
    let asked = [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
        ("shareProcessNamespace", spec.share_process_namespace),
    ];
    match asked.iter().find(|(_, value)| *value == Some(true)) {
        Some((field, _)) => Err(format!(
            "spec.{field}: true is not supported by skiff's runtime"
        )),
        None => Ok(()),
    }
}

/// Who the container runs as.
pub fn wanted(pod: &Pod, container: &Container) -> Wanted {
    let pod_context = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let context = container.security_context.as_ref();
    Wanted {
        run_as_user: (context.and_then(|c| c.run_as_user))
            .or_else(|| pod_context.and_then(|c| c.run_as_user)),
        run_as_group: (context.and_then(|c| c.run_as_group))
            .or_else(|| pod_context.and_then(|c| c.run_as_group)),
        run_as_non_root: (context.and_then(|c| c.run_as_non_root))
            .or_else(|| pod_context.and_then(|c| c.run_as_non_root))
            .unwrap_or(false),
        supplemental_groups: (pod_context.and_then(|c| c.supplemental_groups.clone()))
            .unwrap_or_default(),
    }
}

/// What the container may do.
pub fn of(container: &Container) -> Security {
    let Some(context) = &container.security_context else {
        return Security::default();
    };
    let capabilities = context.capabilities.as_ref();
    Security {
        privileged: context.privileged.unwrap_or(false),
        read_only_root: context.read_only_root_filesystem.unwrap_or(false),
        allow_privilege_escalation: context.allow_privilege_escalation,
        add: capabilities.and_then(|c| c.add.clone()).unwrap_or_default(),
        drop: capabilities
            .and_then(|c| c.drop.clone())
            .unwrap_or_default(),
    }
}
