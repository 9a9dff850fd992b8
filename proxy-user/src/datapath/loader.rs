//! Loads the embedded eBPF object with its maps pinned under the node's
//! bpffs directory and attaches the socket programs to the node's cgroup,
//! reusing whatever a previous agent pinned there.
use std::{
    ffi::CString,
    fs::{self, File},
    io,
    os::{fd::AsFd, unix::ffi::OsStrExt},
    path::Path,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, MapInfo},
    programs::{
        CgroupAttachMode, CgroupSockAddr, Program, ProgramError, ProgramFd, SchedClassifier,
        TcAttachType, links::FdLink,
    },
};
use proxy_common::{
    AffinityKey, AffinityValue, Backend, BackendId, BackendSlotKey, CtKey, CtValue, DatapathConfig,
    FrontendStats, ServiceKey, ServiceValue, SockRevNatKey, SockRevNatValue, capacity, drop_reason,
    map_names,
};
use tracing::info;

use super::{DatapathError, kfunc, link_ops};

pub(super) static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/proxy-ebpf"));

/// The socket programs, by the function names the object exports.
const SOCKET_PROGRAMS: [&str; 4] = [
    "skiff_connect4",
    "skiff_sendmsg4",
    "skiff_recvmsg4",
    "skiff_getpeername4",
];

/// The per-packet programs on the node's uplink.
const UPLINK_PROGRAMS: [(&str, TcAttachType); 2] = [
    ("skiff_nodeport_ingress", TcAttachType::Ingress),
    ("skiff_nodeport_egress", TcAttachType::Egress),
];

/// Maps live in a directory named after their layout version. A layout
/// change gets a new directory, so a new agent never reinterprets an old
/// agent's bytes.
const MAPS_DIR: &str = "maps-v1";

/// Where the maps of the agent pinning under `bpffs` are.
pub fn maps_dir(bpffs: &Path) -> std::path::PathBuf {
    bpffs.join(MAPS_DIR)
}
const LINKS_DIR: &str = "links";

const BPF_FS_MAGIC: i64 = 0xcafe4a11;
const CGROUP2_SUPER_MAGIC: i64 = 0x63677270;

/// What one pinned map must look like for this agent to reuse it.
struct Layout {
    name: &'static str,
    key_size: usize,
    value_size: usize,
    max_entries: u32,
}

const LAYOUTS: [Layout; 9] = [
    Layout {
        name: map_names::SERVICES,
        key_size: size_of::<ServiceKey>(),
        value_size: size_of::<ServiceValue>(),
        max_entries: capacity::SERVICES,
    },
    Layout {
        name: map_names::BACKEND_SLOTS,
        key_size: size_of::<BackendSlotKey>(),
        value_size: size_of::<BackendId>(),
        max_entries: capacity::BACKEND_SLOTS,
    },
    Layout {
        name: map_names::BACKENDS,
        key_size: size_of::<BackendId>(),
        value_size: size_of::<Backend>(),
        max_entries: capacity::BACKENDS,
    },
    Layout {
        name: map_names::SOCK_REV_NAT,
        key_size: size_of::<SockRevNatKey>(),
        value_size: size_of::<SockRevNatValue>(),
        max_entries: capacity::SOCK_REV_NAT,
    },
    Layout {
        name: map_names::AFFINITY,
        key_size: size_of::<AffinityKey>(),
        value_size: size_of::<AffinityValue>(),
        max_entries: capacity::AFFINITY,
    },
    Layout {
        name: map_names::FRONTEND_STATS,
        key_size: size_of::<u32>(),
        value_size: size_of::<FrontendStats>(),
        max_entries: capacity::SERVICES,
    },
    Layout {
        name: map_names::DROPS,
        key_size: size_of::<u32>(),
        value_size: size_of::<u64>(),
        max_entries: drop_reason::COUNT,
    },
    Layout {
        name: map_names::CONNTRACK,
        key_size: size_of::<CtKey>(),
        value_size: size_of::<CtValue>(),
        max_entries: capacity::CONNTRACK,
    },
    Layout {
        name: map_names::CONFIG,
        key_size: size_of::<u32>(),
        value_size: size_of::<DatapathConfig>(),
        max_entries: 1,
    },
];

/// How a program got onto its hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hooked {
    /// A new link, now pinned.
    Attached,
    /// The previous agent's pinned link now runs this agent's program.
    Replaced,
}

/// Loads the object, writes `config` for its programs, hooks the socket
/// programs to `cgroup` and, given an uplink, the NodePort programs to its
/// TCX ingress and egress. The service maps are left in the returned `Ebpf`.
/// `btf` is the kernel's, to resolve the object's kernel function calls.
pub fn load(
    bpffs: &Path,
    cgroup: &Path,
    uplink: Option<&str>,
    config: DatapathConfig,
    btf: &Btf,
) -> Result<Ebpf, DatapathError> {
    require_fs(
        bpffs,
        BPF_FS_MAGIC,
        "a bpf filesystem (mount one with `mount -t bpf bpf /sys/fs/bpf`)",
    )?;
    require_fs(cgroup, CGROUP2_SUPER_MAGIC, "a cgroup v2 directory")?;
    let maps_dir = maps_dir(bpffs);
    let links_dir = bpffs.join(LINKS_DIR);
    for dir in [&maps_dir, &links_dir] {
        fs::create_dir_all(dir).map_err(|cause| DatapathError::Io {
            path: dir.clone(),
            cause,
        })?;
    }
    check_pinned_layouts(&maps_dir)?;

    let object = kfunc::link(OBJECT, btf).map_err(DatapathError::Kfunc)?;
    let mut ebpf = EbpfLoader::new()
        .btf(Some(btf))
        .default_map_pin_directory(&maps_dir)
        .load(object.bytes())
        .map_err(DatapathError::Load)?;
    // Written before any program is hooked, so none runs without it.
    let config_map = ebpf
        .map_mut(map_names::CONFIG)
        .ok_or(DatapathError::MissingMap(map_names::CONFIG))?;
    let map_error = |cause| DatapathError::Map {
        name: map_names::CONFIG,
        cause,
    };
    Array::<_, DatapathConfig>::try_from(config_map)
        .map_err(map_error)?
        .set(0, config, 0)
        .map_err(map_error)?;
    let cgroup_dir = File::open(cgroup).map_err(|cause| DatapathError::Io {
        path: cgroup.to_path_buf(),
        cause,
    })?;
    for name in SOCKET_PROGRAMS {
        let program: &mut CgroupSockAddr = program(&mut ebpf, name)?;
        let link_path = links_dir.join(name);
        let hooked = hook(program, name, &link_path, |program| {
            let link_id = program.attach(&cgroup_dir, CgroupAttachMode::Single)?;
            Ok(program.take_link(link_id)?.try_into())
        })?;
        info!(program = name, cgroup = %cgroup.display(), link = %link_path.display(), ?hooked, "program hooked");
    }
    if let Some(uplink) = uplink {
        for (name, attach_type) in UPLINK_PROGRAMS {
            let program: &mut SchedClassifier = program(&mut ebpf, name)?;
            let link_path = links_dir.join(name);
            let hooked = hook(program, name, &link_path, |program| {
                let link_id = program.attach(uplink, attach_type)?;
                Ok(program.take_link(link_id)?.try_into())
            })?;
            info!(program = name, %uplink, link = %link_path.display(), ?hooked, "program hooked");
        }
    }
    Ok(ebpf)
}

/// Program `name` of the object, loaded into the kernel.
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, DatapathError>
where
    &'a mut P: TryFrom<&'a mut Program, Error = ProgramError>,
    P: LoadProgram + 'a,
{
    let program: &mut P = ebpf
        .program_mut(name)
        .ok_or(DatapathError::MissingProgram(name))?
        .try_into()
        .map_err(|cause| DatapathError::Program { name, cause })?;
    program
        .load_program()
        .map_err(|cause| DatapathError::Program { name, cause })?;
    Ok(program)
}

/// The two program kinds skiff hooks, behind one loading and hooking path.
trait LoadProgram {
    fn load_program(&mut self) -> Result<(), ProgramError>;
    fn program_fd(&self) -> Result<&ProgramFd, ProgramError>;
}

impl LoadProgram for CgroupSockAddr {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
    fn program_fd(&self) -> Result<&ProgramFd, ProgramError> {
        self.fd()
    }
}

impl LoadProgram for SchedClassifier {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
    fn program_fd(&self) -> Result<&ProgramFd, ProgramError> {
        self.fd()
    }
}

type NewLink = Result<FdLink, aya::programs::links::LinkError>;

/// Puts `program` on its hook: into the link a previous agent pinned at
/// `link_path` if there is a live one, else through `attach` and a new pin.
fn hook<P: LoadProgram>(
    program: &mut P,
    name: &'static str,
    link_path: &Path,
    attach: impl FnOnce(&mut P) -> Result<NewLink, ProgramError>,
) -> Result<Hooked, DatapathError> {
    if replace_pinned(link_path, name, program.program_fd())? {
        return Ok(Hooked::Replaced);
    }
    let link = attach(program).map_err(|cause| DatapathError::Program { name, cause })?;
    pin(link, name, link_path)
}

/// Swaps the program into the link a previous agent pinned at `link_path`
/// (atomically: the hook never runs without a program). Returns false if
/// there is no live pinned link, and the program must be attached anew.
fn replace_pinned(
    link_path: &Path,
    name: &'static str,
    program_fd: Result<&ProgramFd, ProgramError>,
) -> Result<bool, DatapathError> {
    if !link_path.exists() {
        return Ok(false);
    }
    let link_error = |cause: io::Error| DatapathError::Link {
        path: link_path.to_path_buf(),
        cause,
    };
    let link = link_ops::open_pinned(link_path).map_err(link_error)?;
    let program_fd = program_fd.map_err(|cause| DatapathError::Program { name, cause })?;
    match link_ops::replace_program(link.as_fd(), program_fd.as_fd()) {
        Ok(()) => Ok(true),
        // What the link was attached to (a cgroup, a device) is gone.
        Err(error) if error.raw_os_error() == Some(libc::ENOLINK) => {
            fs::remove_file(link_path).map_err(link_error)?;
            Ok(false)
        }
        Err(error) => Err(link_error(error)),
    }
}

fn pin(link: NewLink, name: &'static str, link_path: &Path) -> Result<Hooked, DatapathError> {
    link.map_err(|cause| DatapathError::LinkConvert { name, cause })?
        .pin(link_path)
        .map_err(|cause| DatapathError::Pin {
            path: link_path.to_path_buf(),
            cause,
        })?;
    Ok(Hooked::Attached)
}

fn require_fs(path: &Path, magic: i64, what: &'static str) -> Result<(), DatapathError> {
    // A directory that does not exist yet will be created on the filesystem
    // of its nearest existing ancestor.
    let existing = path
        .ancestors()
        .find(|ancestor| ancestor.exists())
        .unwrap_or(Path::new("/"));
    let io_error = |cause| DatapathError::Io {
        path: existing.to_path_buf(),
        cause,
    };
    let c_path = CString::new(existing.as_os_str().as_bytes())
        .map_err(|_| io_error(io::Error::new(io::ErrorKind::InvalidInput, "NUL in path")))?;
    // SAFETY: `statfs` only writes into the zeroed struct; the path is
    // NUL-terminated and outlives the call.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io_error(io::Error::last_os_error()));
    }
    if stat.f_type as i64 != magic {
        return Err(DatapathError::WrongFilesystem {
            path: path.to_path_buf(),
            what,
        });
    }
    Ok(())
}

/// Refuses to reuse a pinned map whose shape differs from what this agent's
/// programs expect (aya would reuse it blindly).
fn check_pinned_layouts(maps_dir: &Path) -> Result<(), DatapathError> {
    for layout in &LAYOUTS {
        let path = maps_dir.join(layout.name);
        if !path.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&path).map_err(|cause| DatapathError::Map {
            name: layout.name,
            cause,
        })?;
        let found = (
            info.key_size() as usize,
            info.value_size() as usize,
            info.max_entries(),
        );
        let expected = (layout.key_size, layout.value_size, layout.max_entries);
        if found != expected {
            return Err(DatapathError::PinnedLayout {
                path,
                found: format!(
                    "key {} B, value {} B, {} entries",
                    found.0, found.1, found.2
                ),
                expected: format!(
                    "key {} B, value {} B, {} entries",
                    expected.0, expected.1, expected.2
                ),
            });
        }
    }
    Ok(())
}
