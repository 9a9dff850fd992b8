//! The OCI runtime spec (`config.json`) of one container: its process,
//! the pod's netns and pinned IPC and UTS namespaces, its own mount, PID
//! and cgroup namespaces, the cgroup the socket load balancer sees, Docker's
//! default capabilities adjusted by the securityContext, limits, and the
//! mounts (the pod's /etc files, then volumes).
use std::{collections::HashSet, path::PathBuf};

use oci_spec::{
    OciSpecError,
    runtime::{
        Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder,
        LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount,
        MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
        get_default_maskedpaths, get_default_mounts, get_default_readonly_paths,
    },
};

use super::user::Identity;

/// Docker's default capabilities, which Kubernetes' containers get.
const DOCKER_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

const CFS_PERIOD_US: u64 = 100_000;

/// The securityContext fields the spec follows.
#[derive(Debug, Clone, Default)]
pub struct Security {
    pub privileged: bool,
    pub read_only_root: bool,
    pub allow_privilege_escalation: Option<bool>,
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    /// Millicores.
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// A bind mount into the container: the pod's /etc files, a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub read_only: bool,
}

/// Everything one container's spec is made of.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub argv: Vec<String>,
    /// `NAME=value`.
    pub env: Vec<String>,
    pub cwd: String,
    pub identity: Identity,
    pub hostname: String,
    pub netns: PathBuf,
    pub ipc_ns: PathBuf,
    pub uts_ns: PathBuf,
    /// The cgroup, as a path from the cgroup v2 root.
    pub cgroups_path: PathBuf,
    pub security: Security,
    pub limits: Limits,
    pub mounts: Vec<BindMount>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("unknown capability {0}")]
    Capability(String),
    #[error(transparent)]
    Oci(#[from] OciSpecError),
}

pub fn build(inputs: &Inputs) -> Result<Spec, SpecError> {
    let security = &inputs.security;
    let capabilities = capabilities(security)?;
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(capabilities.clone())
        .effective(capabilities.clone())
        .permitted(capabilities)
        .build()?;
    let user = UserBuilder::default()
        .uid(inputs.identity.uid)
        .gid(inputs.identity.gid)
        .additional_gids(inputs.identity.additional_gids.clone())
        .build()?;
    let no_new_privileges =
        !security.privileged && security.allow_privilege_escalation == Some(false);
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(inputs.argv.clone())
        .env(inputs.env.clone())
        .cwd(inputs.cwd.clone())
        .user(user)
        .capabilities(caps)
        .no_new_privileges(no_new_privileges)
        .build()?;
    let root = RootBuilder::default()
        .path("rootfs")
        .readonly(security.read_only_root)
        .build()?;
    let mut mounts = default_mounts(security.privileged);
    for bind in &inputs.mounts {
        let mut options = vec!["rbind".to_owned(), "rprivate".to_owned()];
        if bind.read_only {
            options.push("ro".to_owned());
        }
        mounts.push(
            MountBuilder::default()
                .destination(bind.destination.clone())
                .typ("bind")
                .source(bind.source.clone())
                .options(options)
                .build()?,
        );
    }
    let namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Network, Some(inputs.netns.clone()))?,
        namespace(LinuxNamespaceType::Ipc, Some(inputs.ipc_ns.clone()))?,
        namespace(LinuxNamespaceType::Uts, Some(inputs.uts_ns.clone()))?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Cgroup, None)?,
    ];
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(bytes) = inputs.limits.memory_bytes {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        resources = resources.memory(LinuxMemoryBuilder::default().limit(bytes).build()?);
    }
    if let Some(millis) = inputs.limits.cpu_millis {
        let quota = (millis * CFS_PERIOD_US / 1000).max(1000);
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(i64::try_from(quota).unwrap_or(i64::MAX))
                .period(CFS_PERIOD_US)
                .build()?,
        );
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(inputs.cgroups_path.clone())
        .resources(resources.build()?);
    if !security.privileged {
        linux = linux
            .masked_paths(get_default_maskedpaths())
            .readonly_paths(get_default_readonly_paths());
    }
    Ok(SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(root)
        .hostname(inputs.hostname.clone())
        .mounts(mounts)
        .linux(linux.build()?)
        .build()?)
}

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> Result<LinuxNamespace, SpecError> {
    let mut builder = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(path) = path {
        builder = builder.path(path);
    }
    Ok(builder.build()?)
}

/// runc's usual mounts; a privileged container's /sys is writable.
fn default_mounts(privileged: bool) -> Vec<Mount> {
    let mut mounts = get_default_mounts();
    if privileged {
        for mount in &mut mounts {
            if let Some(options) = mount.options().clone() {
                mount.set_options(Some(options.into_iter().filter(|o| o != "ro").collect()));
            }
        }
    }
    mounts
}

/// Docker's set, or every capability for a privileged container; then
/// `drop` (`ALL` empties it) and `add` (`ALL` fills it).
fn capabilities(security: &Security) -> Result<HashSet<Capability>, SpecError> {
    let all = || -> HashSet<Capability> {
        ALL_CAPABILITY_NAMES
            .iter()
            .filter_map(|name| parse(name).ok())
            .collect()
    };
    let mut set: HashSet<Capability> = match security.privileged {
        true => all(),
        false => DOCKER_CAPABILITIES.into_iter().collect(),
    };
    if security.drop.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        set.clear();
    }
    for name in security
        .drop
        .iter()
        .filter(|c| !c.eq_ignore_ascii_case("ALL"))
    {
        set.remove(&parse(name)?);
    }
    for name in &security.add {
        match name.eq_ignore_ascii_case("ALL") {
            true => set.extend(all()),
            false => {
                set.insert(parse(name)?);
            }
        }
    }
    Ok(set)
}

fn parse(name: &str) -> Result<Capability, SpecError> {
    serde_json::from_value(serde_json::json!(name)).map_err(|_| SpecError::Capability(name.into()))
}

/// Every capability runc 1.1 knows.
const ALL_CAPABILITY_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn names(security: &Security) -> Vec<String> {
        let mut names: Vec<String> = capabilities(security)
            .unwrap()
            .iter()
            .map(|c| {
                serde_json::to_value(c)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn capabilities_start_from_dockers_set_and_follow_add_and_drop() {
        assert_eq!(names(&Security::default()).len(), 14);
        let adjusted = Security {
            add: vec!["NET_ADMIN".into()],
            drop: vec!["CAP_NET_RAW".into(), "kill".into()],
            ..Security::default()
        };
        let adjusted = names(&adjusted);
        assert!(adjusted.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(!adjusted.contains(&"CAP_NET_RAW".to_owned()));
        assert!(!adjusted.contains(&"CAP_KILL".to_owned()));
        let only = Security {
            drop: vec!["ALL".into()],
            add: vec!["NET_BIND_SERVICE".into()],
            ..Security::default()
        };
        assert_eq!(names(&only), ["CAP_NET_BIND_SERVICE"]);
        let privileged = Security {
            privileged: true,
            ..Security::default()
        };
        assert_eq!(names(&privileged).len(), ALL_CAPABILITY_NAMES.len());
        let unknown = Security {
            add: vec!["FLY".into()],
            ..Security::default()
        };
        assert!(matches!(capabilities(&unknown), Err(SpecError::Capability(c)) if c == "FLY"));
    }
}
