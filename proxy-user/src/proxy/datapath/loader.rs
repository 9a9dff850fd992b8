//! Loads the embedded eBPF object with its maps pinned under the node's
//! bpffs directory, and hooks the socket programs to the node's cgroup and
//! the per-packet ones to its uplink, reusing whatever a previous agent
//! pinned there.
//!
//! Maps live in a directory named after their layout version. When an
//! agent finds an older version's directory (an upgrade that changed a
//! map's layout), it fills its own maps first, carries the per-flow state
//! over where the layout allows, swaps its programs into the pinned links,
//! and only then removes the old maps: the old programs serve from the old
//! maps until the moment the new ones take over.
use std::{
    ffi::CString,
    fs::{self, File},
    io,
    os::{fd::AsFd, unix::ffi::OsStrExt},
    path::{Path, PathBuf},
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, MapInfo},
    programs::{
        CgroupAttachMode, CgroupSockAddr, Program, ProgramError, ProgramFd, SchedClassifier,
        SockOps, TcAttachType, Xdp, XdpMode, links::FdLink,
    },
};
use proxy_common::{
    AffinityKey, AffinityValue, Backend, Backend6, BackendId, BackendSlotKey, CtKey, CtKey6,
    CtValue, CtValue6, DatapathConfig, FrontendStats, Ipv6Words, MaglevTable, ServiceCidr6,
    ServiceKey, ServiceKey6, ServiceValue, SockRevNatKey, SockRevNatKey6, SockRevNatValue,
    SockRevNatValue6, SourceRange, SourceRange6, capacity, drop_reason, map_names,
};
use tracing::{info, warn};

use super::{
    error::{DatapathError, chain},
    migrate,
};
use crate::sys::{kfunc, link_ops};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/proxy-ebpf"));

/// The socket programs, by the function names the object exports.
const SOCKET_PROGRAMS: [&str; 8] = [
    "skiff_connect4",
    "skiff_sendmsg4",
    "skiff_recvmsg4",
    "skiff_getpeername4",
    "skiff_connect6",
    "skiff_sendmsg6",
    "skiff_recvmsg6",
    "skiff_getpeername6",
];

/// The `sock_ops` program on the node's cgroup: how connects through
/// frontends with outlier detection end (passive health).
const SOCK_OPS_PROGRAM: &str = "skiff_sock_ops";

/// The per-packet programs on the node's uplink, in the order they are
/// swapped in.
const UPLINK_PROGRAMS: [(&str, TcAttachType); 2] = [
    ("skiff_tc_egress", TcAttachType::Egress),
    ("skiff_tc_ingress", TcAttachType::Ingress),
];

/// The program on pod interfaces' ingress.
const POD_INTERFACE_PROGRAM: &str = "skiff_tc_ingress";

/// The XDP fast path of the uplink's ingress.
const XDP_PROGRAM: &str = "skiff_xdp_ingress";

/// Maps live in a directory named after their layout version
/// (`proxy_common::MAPS_DIR`). A layout change gets a new directory, so a
/// new agent never reinterprets an old agent's bytes.
const MAPS_DIR_PREFIX: &str = "maps-v";

/// Where the maps of the agent pinning under `bpffs` are.
pub fn maps_dir(bpffs: &Path) -> std::path::PathBuf {
    bpffs.join(proxy_common::MAPS_DIR)
}

/// Maps directories of other layout versions under `bpffs`.
fn other_maps_dirs(bpffs: &Path) -> Vec<PathBuf> {
    let current = maps_dir(bpffs);
    let Ok(entries) = fs::read_dir(bpffs) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            *path != current
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(MAPS_DIR_PREFIX))
        })
        .collect();
    dirs.sort();
    dirs
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

/// Maps added after `MAPS_DIR` last changed (the IPv6 ones among them)
/// need no new directory: aya creates and pins a map whose pin is missing,
/// so an agent adopting an older agent's maps starts these empty.
const LAYOUTS: [Layout; 22] = [
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
        name: map_names::MAGLEV,
        key_size: size_of::<u32>(),
        value_size: size_of::<MaglevTable>(),
        max_entries: capacity::MAGLEV,
    },
    Layout {
        // An LPM trie key starts with its 32-bit prefix length.
        name: map_names::SOURCE_RANGES,
        key_size: size_of::<u32>() + size_of::<SourceRange>(),
        value_size: size_of::<u8>(),
        max_entries: capacity::SOURCE_RANGES,
    },
    Layout {
        name: map_names::FRONTEND_ADDRESSES,
        key_size: size_of::<u32>(),
        value_size: size_of::<u8>(),
        max_entries: capacity::FRONTEND_ADDRESSES,
    },
    Layout {
        // A device map's value: the target ifindex and a program fd or id.
        name: map_names::POD_PORTS,
        key_size: size_of::<u32>(),
        value_size: 2 * size_of::<u32>(),
        max_entries: capacity::POD_PORTS,
    },
    Layout {
        name: map_names::CONFIG,
        key_size: size_of::<u32>(),
        value_size: size_of::<DatapathConfig>(),
        max_entries: 1,
    },
    Layout {
        name: map_names::SERVICES6,
        key_size: size_of::<ServiceKey6>(),
        value_size: size_of::<ServiceValue>(),
        max_entries: capacity::SERVICES,
    },
    Layout {
        name: map_names::BACKENDS6,
        key_size: size_of::<BackendId>(),
        value_size: size_of::<Backend6>(),
        max_entries: capacity::BACKENDS,
    },
    Layout {
        name: map_names::SOCK_REV_NAT6,
        key_size: size_of::<SockRevNatKey6>(),
        value_size: size_of::<SockRevNatValue6>(),
        max_entries: capacity::SOCK_REV_NAT,
    },
    Layout {
        name: map_names::CONFIG6,
        key_size: size_of::<u32>(),
        value_size: size_of::<ServiceCidr6>(),
        max_entries: 1,
    },
    Layout {
        name: map_names::CONNTRACK6,
        key_size: size_of::<CtKey6>(),
        value_size: size_of::<CtValue6>(),
        max_entries: capacity::CONNTRACK,
    },
    Layout {
        name: map_names::FRONTEND_ADDRESSES6,
        key_size: size_of::<Ipv6Words>(),
        value_size: size_of::<u8>(),
        max_entries: capacity::FRONTEND_ADDRESSES,
    },
    Layout {
        name: map_names::NODE_ADDRESS6,
        key_size: size_of::<u32>(),
        value_size: size_of::<Ipv6Words>(),
        max_entries: 1,
    },
    Layout {
        name: map_names::SOURCE_RANGES6,
        key_size: size_of::<u32>() + size_of::<SourceRange6>(),
        value_size: size_of::<u8>(),
        max_entries: capacity::SOURCE_RANGES,
    },
    Layout {
        // An ifindex by IPv6 address (a device map's keys are 4 bytes).
        name: map_names::POD_PORTS6,
        key_size: size_of::<Ipv6Words>(),
        value_size: size_of::<u32>(),
        max_entries: capacity::POD_PORTS,
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

/// Whether and how the uplink's XDP fast path is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpChoice {
    /// Native (driver) mode if the interface supports it, else generic.
    Auto,
    /// Native mode, or fail.
    Native,
    /// Generic (skb) mode: runs after the skb is built; for testing.
    Generic,
    /// No XDP: the TCX program does all the per-packet work.
    Off,
}

/// The interface outside traffic arrives on, and its XDP choice.
#[derive(Debug, Clone)]
pub struct Uplink {
    pub name: String,
    pub xdp: XdpChoice,
}

/// Loads the object with its maps pinned under `bpffs` and writes `config`,
/// the IPv6 service CIDR `cidr6` and this node's IPv6 address `node6` (all
/// zero: none) for its programs. Nothing is hooked yet: the caller fills the maps
/// first, then calls `hook`. `btf` is the kernel's, to resolve the
/// object's kernel function calls.
pub fn load(
    bpffs: &Path,
    config: DatapathConfig,
    cidr6: ServiceCidr6,
    node6: Ipv6Words,
    btf: &Btf,
) -> Result<Ebpf, DatapathError> {
    require_fs(
        bpffs,
        BPF_FS_MAGIC,
        "a bpf filesystem (mount one with `mount -t bpf bpf /sys/fs/bpf`)",
    )?;
    let maps_dir = maps_dir(bpffs);
    for dir in [&maps_dir, &bpffs.join(LINKS_DIR)] {
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
    // Written before any program is hooked, so none runs without them.
    set_config(&mut ebpf, map_names::CONFIG, config)?;
    set_config(&mut ebpf, map_names::CONFIG6, cidr6)?;
    set_config(&mut ebpf, map_names::NODE_ADDRESS6, node6)?;
    Ok(ebpf)
}

/// Writes the only entry of the config array `name`.
fn set_config<T: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
    value: T,
) -> Result<(), DatapathError> {
    let map = ebpf.map_mut(name).ok_or(DatapathError::MissingMap(name))?;
    let map_error = |cause| DatapathError::Map { name, cause };
    Array::<_, T>::try_from(map)
        .map_err(map_error)?
        .set(0, value, 0)
        .map_err(map_error)
}

/// Hooks the socket programs to `cgroup` and, given an uplink, the
/// per-packet programs to it; then retires what an older agent left: maps
/// of another layout version (their per-flow state carried over first) and
/// links to programs this agent no longer has.
pub fn hook_all(
    ebpf: &mut Ebpf,
    bpffs: &Path,
    cgroup: &Path,
    uplink: Option<&Uplink>,
    pod_interfaces: &[String],
) -> Result<(), DatapathError> {
    require_fs(cgroup, CGROUP2_SUPER_MAGIC, "a cgroup v2 directory")?;
    // Every program is loaded (and verified) before the first swap, so the
    // swaps follow each other within microseconds: old and new programs,
    // each on its own maps after a layout change, share the hooks for as
    // short a time as possible.
    for name in SOCKET_PROGRAMS {
        program::<CgroupSockAddr>(ebpf, name)?;
    }
    program::<SockOps>(ebpf, SOCK_OPS_PROGRAM)?;
    if uplink.is_some() || !pod_interfaces.is_empty() {
        for (name, _) in UPLINK_PROGRAMS {
            program::<SchedClassifier>(ebpf, name)?;
        }
    }
    if uplink.is_some_and(|uplink| uplink.xdp != XdpChoice::Off) {
        program::<Xdp>(ebpf, XDP_PROGRAM)?;
    }
    let old_maps = other_maps_dirs(bpffs);
    for old in &old_maps {
        migrate::carry_flow_state(old, &maps_dir(bpffs), migrate::Pass::Before);
    }
    let links_dir = bpffs.join(LINKS_DIR);
    let mut hooked_links = Vec::new();
    let cgroup_dir = File::open(cgroup).map_err(|cause| DatapathError::Io {
        path: cgroup.to_path_buf(),
        cause,
    })?;
    for name in SOCKET_PROGRAMS {
        let program: &mut CgroupSockAddr = program(ebpf, name)?;
        let link_path = links_dir.join(name);
        let hooked = hook(program, name, &link_path, |program| {
            let link_id = program.attach(&cgroup_dir, CgroupAttachMode::Single)?;
            Ok(program.take_link(link_id)?.try_into())
        })?;
        info!(program = name, cgroup = %cgroup.display(), link = %link_path.display(), ?hooked, "program hooked");
        hooked_links.push(link_path);
    }
    let sock_ops: &mut SockOps = program(ebpf, SOCK_OPS_PROGRAM)?;
    let link_path = links_dir.join(SOCK_OPS_PROGRAM);
    let hooked = hook(sock_ops, SOCK_OPS_PROGRAM, &link_path, |program| {
        let link_id = program.attach(&cgroup_dir, CgroupAttachMode::Single)?;
        Ok(program.take_link(link_id)?.try_into())
    })?;
    info!(program = SOCK_OPS_PROGRAM, cgroup = %cgroup.display(), link = %link_path.display(), ?hooked, "program hooked");
    hooked_links.push(link_path);
    if let Some(uplink) = uplink {
        for (name, attach_type) in UPLINK_PROGRAMS {
            let program: &mut SchedClassifier = program(ebpf, name)?;
            let link_path = links_dir.join(name);
            let hooked = hook(program, name, &link_path, |program| {
                let link_id = program.attach(&uplink.name, attach_type)?;
                Ok(program.take_link(link_id)?.try_into())
            })?;
            info!(program = name, uplink = %uplink.name, link = %link_path.display(), ?hooked, "program hooked");
            hooked_links.push(link_path);
        }
        if let Some(link_path) = hook_xdp(ebpf, &links_dir, uplink)? {
            hooked_links.push(link_path);
        }
    }
    let ingress = POD_INTERFACE_PROGRAM;
    for interface in pod_interfaces {
        let program: &mut SchedClassifier = program(ebpf, ingress)?;
        let link_path = links_dir.join(format!("{ingress}_{interface}"));
        let hooked = hook(program, ingress, &link_path, |program| {
            let link_id = program.attach(interface, TcAttachType::Ingress)?;
            Ok(program.take_link(link_id)?.try_into())
        })?;
        info!(program = ingress, %interface, link = %link_path.display(), ?hooked, "program hooked on a pod interface");
        hooked_links.push(link_path);
    }
    // Unpinning a link nothing else holds detaches its program.
    for stale in pinned_links(&links_dir)
        .into_iter()
        .filter(|path| !hooked_links.contains(path))
    {
        fs::remove_file(&stale).map_err(|cause| DatapathError::Io {
            path: stale.clone(),
            cause,
        })?;
        info!(link = %stale.display(), "stale link removed");
    }
    for old in old_maps {
        // Flows the old programs opened while the hooks were being swapped.
        migrate::carry_flow_state(&old, &maps_dir(bpffs), migrate::Pass::After);
        fs::remove_dir_all(&old).map_err(|cause| DatapathError::Io {
            path: old.clone(),
            cause,
        })?;
        info!(maps = %old.display(), "maps of an older layout removed");
    }
    Ok(())
}

/// Attaches the XDP program as `uplink.xdp` asks. The mode is part of the
/// pin's name: a pinned link keeps the mode it was attached in, so a link
/// in another mode than the one asked for is replaced (the TCX program
/// serves alone meanwhile). Returns the pinned link, if any.
fn hook_xdp(
    ebpf: &mut Ebpf,
    links_dir: &Path,
    uplink: &Uplink,
) -> Result<Option<PathBuf>, DatapathError> {
    // bpffs refuses names with dots.
    let pin = |mode: &str| links_dir.join(format!("{XDP_PROGRAM}_{mode}"));
    let (native, generic) = (pin("native"), pin("generic"));
    let candidates: Vec<(XdpMode, &PathBuf)> = match uplink.xdp {
        XdpChoice::Off => Vec::new(),
        XdpChoice::Native => vec![(XdpMode::Driver, &native)],
        XdpChoice::Generic => vec![(XdpMode::Skb, &generic)],
        // An existing generic link is kept: native is tried only when there
        // is no link yet.
        XdpChoice::Auto if generic.exists() && !native.exists() => vec![(XdpMode::Skb, &generic)],
        XdpChoice::Auto => vec![(XdpMode::Driver, &native), (XdpMode::Skb, &generic)],
    };
    for pinned in [&native, &generic] {
        if pinned.exists() && !candidates.iter().any(|(_, path)| *path == pinned) {
            fs::remove_file(pinned).map_err(|cause| DatapathError::Io {
                path: pinned.clone(),
                cause,
            })?;
            info!(link = %pinned.display(), "XDP link of another mode removed");
        }
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    let program: &mut Xdp = program(ebpf, XDP_PROGRAM)?;
    let mut last_error = None;
    for (mode, link_path) in candidates {
        match hook(program, XDP_PROGRAM, link_path, |program| {
            let link_id = program.attach(&uplink.name, mode)?;
            Ok(program.take_link(link_id)?.try_into())
        }) {
            Ok(hooked) => {
                info!(program = XDP_PROGRAM, uplink = %uplink.name, ?mode, link = %link_path.display(), ?hooked, "program hooked");
                return Ok(Some(link_path.to_path_buf()));
            }
            Err(error) => {
                warn!(uplink = %uplink.name, ?mode, error = %chain(&error), "XDP attach failed");
                last_error = Some(error);
            }
        }
    }
    match (uplink.xdp, last_error) {
        (XdpChoice::Auto, _) => {
            warn!(uplink = %uplink.name, "no XDP mode works here; the TCX program serves alone");
            Ok(None)
        }
        (_, Some(error)) => Err(error),
        (_, None) => Ok(None),
    }
}

fn pinned_links(links_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(links_dir) else {
        return Vec::new();
    };
    entries.flatten().map(|entry| entry.path()).collect()
}

/// Program `name` of the object, loaded into the kernel (if it was not yet).
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
    // A program hooked in several places is loaded once.
    if program.program_fd().is_err() {
        load_retrying(program, name).map_err(|cause| DatapathError::Program { name, cause })?;
    }
    Ok(program)
}

/// Loads of one program before an `EAGAIN` is given up on.
const LOAD_ATTEMPTS: u32 = 5;

/// The verifier stops with `EAGAIN` when a signal reaches the loading
/// thread while it works (seen on a busy machine); the load is retried,
/// as libbpf retries it.
fn load_retrying<P: LoadProgram>(program: &mut P, name: &'static str) -> Result<(), ProgramError> {
    let mut attempt = 1;
    loop {
        match program.load_program() {
            Err(ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < LOAD_ATTEMPTS =>
            {
                warn!(
                    program = name,
                    attempt, "the verifier was interrupted (EAGAIN); loading again"
                );
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// The program kinds skiff hooks, behind one loading and hooking path.
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

impl LoadProgram for SockOps {
    fn load_program(&mut self) -> Result<(), ProgramError> {
        self.load()
    }
    fn program_fd(&self) -> Result<&ProgramFd, ProgramError> {
        self.fd()
    }
}

impl LoadProgram for Xdp {
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

#[cfg(test)]
mod tests;
