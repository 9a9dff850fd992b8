//! Where the local cluster of `cargo xtask up` keeps its things, and the
//! names of its daemons. Data survives a reboot (/var/lib/skiff), so does
//! what the daemons said (/var/log/skiff); pid files must not (/run/skiff,
//! a tmpfs).

use std::{
    fmt::Display,
    fs, io,
    path::{Path, PathBuf},
    str::FromStr,
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
/// Whether it is dual-stack (`true`) or IPv4 only (`false`; no record: a
/// cluster kept before `up` wrote one, taken as IPv4 only).
const DUAL_STACK_RECORD: &str = "dual-stack";

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
    let kept = read_record(NODES_RECORD)?;
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

/// Whether the cluster is dual-stack: asked for (`up --dual-stack`), or
/// the kept cluster is, so a later `up` or `restore` without the flag does
/// not bring it back IPv4 only. Fails if asked for over a kept IPv4-only
/// cluster, whose Services and pods have no IPv6 addresses.
pub fn dual_stack(asked: bool) -> Result<bool> {
    settle_dual_stack(asked, read_record(DUAL_STACK_RECORD)?)
}

fn settle_dual_stack(asked: bool, kept: Option<bool>) -> Result<bool> {
    if asked && kept == Some(false) {
        bail!(
            "the cluster kept in {DATA_DIR} is IPv4 only, not dual-stack: \
             `cargo xtask down` (which removes its data) first to change that"
        );
    }
    Ok(asked || kept.unwrap_or(false))
}

pub fn record_dual_stack(dual_stack: bool) -> Result<()> {
    write_record(DUAL_STACK_RECORD, dual_stack)
}

fn read_record<T: FromStr>(name: &str) -> Result<Option<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let record = Path::new(DATA_DIR).join(name);
    match fs::read_to_string(&record) {
        Ok(text) => Ok(Some(text.trim().parse().with_context(|| {
            format!("{} holds {:?}", record.display(), text.trim())
        })?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", record.display())),
    }
}

fn write_record(name: &str, value: impl Display) -> Result<()> {
    fs::create_dir_all(DATA_DIR).with_context(|| format!("creating {DATA_DIR}"))?;
    let record = Path::new(DATA_DIR).join(name);
    fs::write(&record, format!("{value}\n"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_dual_stack_cluster_stays_dual_stack_without_the_flag() {
        assert!(settle_dual_stack(false, Some(true)).unwrap());
        assert!(settle_dual_stack(true, Some(true)).unwrap());
        assert!(settle_dual_stack(true, None).unwrap());
        assert!(!settle_dual_stack(false, None).unwrap());
        assert!(!settle_dual_stack(false, Some(false)).unwrap());
        let refused = settle_dual_stack(true, Some(false)).unwrap_err();
        assert!(refused.to_string().contains("IPv4 only"), "{refused}");
    }
}
