//! Where the local cluster of `cargo xtask up` keeps its things, and the
//! names of its daemons. Data survives a reboot (/var/lib/skiff), so does
//! what the daemons said (/var/log/skiff); pid files must not (/run/skiff,
//! a tmpfs).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

/// etcd's data, skiff-control's PKI and kubeconfig, each agent's state.
pub const DATA_DIR: &str = "/var/lib/skiff";
/// One log per daemon, the supervisor's included.
pub const LOG_DIR: &str = "/var/log/skiff";
/// Pid files.
pub const RUN_DIR: &str = "/run/skiff";

pub const SUPERVISOR: &str = "supervisor";
pub const ETCD: &str = "etcd";
pub const CONTROL: &str = "control";
const AGENT_PREFIX: &str = "agent-";

/// How many nodes the cluster whose data is kept has.
const NODES_RECORD: &str = "nodes";
pub const DEFAULT_NODES: u16 = 2;
/// How many control-plane members it has (no record: one, in the root
/// netns).
const CONTROL_PLANES_RECORD: &str = "control-planes";

pub fn run_dir() -> &'static Path {
    Path::new(RUN_DIR)
}

pub fn log_dir() -> &'static Path {
    Path::new(LOG_DIR)
}

pub fn log_file(daemon: &str) -> PathBuf {
    log_dir().join(format!("{daemon}.log"))
}

pub fn agent_name(node: &str) -> String {
    format!("{AGENT_PREFIX}{node}")
}

pub fn etcd_data_dir() -> PathBuf {
    Path::new(DATA_DIR).join(ETCD)
}

/// skiff-control's data directory; its kubeconfig is in there.
pub fn control_data_dir() -> PathBuf {
    Path::new(DATA_DIR).join(CONTROL)
}

/// Where the members of an HA control plane keep their data, one
/// directory each (`cp1`, …): PKI, token, kubeconfig, etcd.
pub fn control_planes_dir() -> PathBuf {
    Path::new(DATA_DIR).join("members")
}

/// The daemon names of HA member `member` (`cp<i>`).
pub fn member_etcd_name(member: &str) -> String {
    format!("{ETCD}-{member}")
}

pub fn member_control_name(member: &str) -> String {
    format!("{CONTROL}-{member}")
}

/// The agent's `--state-dir`: its pods' addresses, so they keep them.
pub fn agent_state_dir(node: &str) -> PathBuf {
    Path::new(DATA_DIR).join("agents").join(node)
}

/// The daemons with a pid file in [`RUN_DIR`] other than the supervisor,
/// in the order to stop them: agents, then skiff-control, then etcd.
pub fn recorded_daemons() -> Result<Vec<String>> {
    let entries = match fs::read_dir(RUN_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {RUN_DIR}")),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            Some(name.strip_suffix(".pid")?.to_owned())
        })
        .filter(|name| name != SUPERVISOR)
        .collect();
    let rank = |name: &str| match name {
        n if n.starts_with(AGENT_PREFIX) => 0,
        n if n.starts_with(CONTROL) => 1,
        _ => 2,
    };
    names.sort_by_key(|n| (rank(n), n.clone()));
    Ok(names)
}

/// The node count to use: the one asked for, else the kept cluster's,
/// else [`DEFAULT_NODES`]. Fails if the kept data is for another count.
pub fn node_count(asked: Option<u16>) -> Result<u16> {
    let record = Path::new(DATA_DIR).join(NODES_RECORD);
    let kept: Option<u16> = match fs::read_to_string(&record) {
        Ok(text) => Some(
            text.trim()
                .parse()
                .with_context(|| format!("{} holds no node count", record.display()))?,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", record.display())),
    };
    match (asked, kept) {
        (Some(asked), Some(kept)) if asked != kept => bail!(
            "the cluster kept in {DATA_DIR} has {kept} node(s), not {asked}: \
             `cargo xtask down` (which removes its data) first to change that"
        ),
        _ => Ok(asked.or(kept).unwrap_or(DEFAULT_NODES)),
    }
}

pub fn record_node_count(nodes: u16) -> Result<()> {
    write_record(NODES_RECORD, nodes)
}

/// The control-plane member count: the one asked for, else the kept
/// cluster's, else 1. Fails if the kept data is for another count.
pub fn control_plane_count(asked: Option<u16>) -> Result<u16> {
    let kept = read_record(CONTROL_PLANES_RECORD)?;
    match (asked, kept) {
        (Some(asked), Some(kept)) if asked != kept => bail!(
            "the cluster kept in {DATA_DIR} has {kept} control-plane member(s), not {asked}: \
             `cargo xtask down` (which removes its data) first to change that"
        ),
        _ => Ok(asked.or(kept).unwrap_or(1)),
    }
}

/// The kept cluster's control-plane member count (1 without a record).
pub fn kept_control_plane_count() -> u16 {
    read_record(CONTROL_PLANES_RECORD)
        .ok()
        .flatten()
        .unwrap_or(1)
}

pub fn record_control_plane_count(members: u16) -> Result<()> {
    write_record(CONTROL_PLANES_RECORD, members)
}

fn read_record(name: &str) -> Result<Option<u16>> {
    let record = Path::new(DATA_DIR).join(name);
    match fs::read_to_string(&record) {
        Ok(text) => {
            Ok(Some(text.trim().parse().with_context(|| {
                format!("{} holds no count", record.display())
            })?))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", record.display())),
    }
}

fn write_record(name: &str, count: u16) -> Result<()> {
    fs::create_dir_all(DATA_DIR).with_context(|| format!("creating {DATA_DIR}"))?;
    let record = Path::new(DATA_DIR).join(name);
    fs::write(&record, format!("{count}\n"))
        .with_context(|| format!("writing {}", record.display()))
}

/// Removes `dir` and all below it; whether it was there.
pub fn remove_tree(dir: &str) -> Result<bool> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {dir}")),
    }
}
