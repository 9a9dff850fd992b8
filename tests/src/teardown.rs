//! Removing a cluster by its names alone, so the same code serves `Drop`,
//! `cargo xtask down` and leftovers of runs that crashed.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::addressing::{SERVICE_CIDR, SERVICE_CIDR_V6};
use crate::bpffs::{self, BPFFS_ROOT};
use crate::cgroup::{self, cgroup2_root};
use crate::cmd::{ip, run};
use crate::error::{HarnessError, Result};
use crate::netns;
use crate::prefix::Prefix;
use crate::wiring::ROUTE_PROTO;

const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Removes everything of the cluster with this prefix (`skiff` or
/// `skiff-<4 hex>`), whether or not it is complete, and returns what it
/// removed. In order:
/// 1. SIGKILL every process in the `<cgroup2>/<prefix>` subtree (cgroup.kill)
///    and every process inside one of the prefix's netns (agents started with
///    `Node::command` are in no skiff cgroup), and wait for the cgroups to empty;
/// 2. delete the root-netns links `<prefix>-*` (their routes go with them);
/// 3. delete the netns `<prefix>-*`;
/// 4. delete the root `blackhole 10.96.0.0/12` once no skiff link remains;
/// 5. remove the cgroup directories, children first (with the cgroup v1
///    mirrors runc made for pods' containers), and `/sys/fs/bpf/<prefix>`.
///
/// Goes on after a failure and reports all of them at the end.
pub fn teardown_prefix(prefix: &str) -> Result<Vec<String>> {
    teardown(&Prefix::parse(prefix)?)
}

pub(crate) fn teardown(prefix: &Prefix) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut failures = Vec::new();
    fn note(failures: &mut Vec<String>, result: Result<()>) {
        if let Err(e) = result {
            failures.push(e.to_string());
        }
    }
    let cgroup_dir = match cgroup2_root() {
        Ok(root) => Some(root.join(prefix.as_str())).filter(|d| d.exists()),
        Err(e) => {
            failures.push(e.to_string());
            None
        }
    };
    if let Some(dir) = &cgroup_dir {
        if is_populated(dir) {
            removed.push(format!("processes in cgroup {}", dir.display()));
        }
        note(&mut failures, cgroup::kill_subtree(dir, KILL_TIMEOUT));
    }
    let namespaces = owned(prefix, netns::list()).unwrap_or_else(|e| {
        failures.push(e.to_string());
        Vec::new()
    });
    for ns in &namespaces {
        note(
            &mut failures,
            netns::kill_processes(ns).map(|killed| removed.extend(killed)),
        );
    }
    match owned(prefix, root_links()) {
        Ok(links) => {
            for link in links {
                note(
                    &mut failures,
                    run(Command::new("ip").args(["link", "delete", &link]))
                        .map(|_| removed.push(format!("link {link}"))),
                );
            }
        }
        Err(e) => failures.push(e.to_string()),
    }
    for ns in &namespaces {
        note(
            &mut failures,
            netns::delete(ns).map(|()| removed.push(format!("netns {ns}"))),
        );
    }
    note(&mut failures, remove_blackhole_if_unused(&mut removed));
    if let Some(dir) = &cgroup_dir {
        let mut dirs = Vec::new();
        note(&mut failures, cgroup::remove_tree(dir, &mut dirs));
        removed.extend(dirs.iter().map(|d| format!("cgroup {}", d.display())));
    }
    for mirror in cgroup::v1_mirrors(prefix.as_str()) {
        let mut dirs = Vec::new();
        note(&mut failures, cgroup::remove_tree(&mirror, &mut dirs));
        removed.extend(dirs.iter().map(|d| format!("cgroup {}", d.display())));
    }
    let pins = bpffs::prefix_dir(prefix);
    if pins.exists() {
        match fs::remove_dir_all(&pins) {
            Ok(()) => removed.push(format!("bpffs {}", pins.display())),
            Err(e) => failures.push(format!("cannot remove {}: {e}", pins.display())),
        }
    }
    if failures.is_empty() {
        Ok(removed)
    } else {
        Err(HarnessError::Teardown { failures })
    }
}

/// Tears down every test run (`skiff-<4 hex>`) other than `keep`. Only
/// called with the cluster lock held, when no other run can be alive.
pub(crate) fn remove_stale_runs(keep: &Prefix) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    for prefix in all_prefixes()?
        .into_iter()
        .filter(|p| p.is_random() && p != keep)
    {
        removed.extend(
            teardown(&prefix)?
                .into_iter()
                .map(|what| format!("{prefix}: {what}")),
        );
    }
    Ok(removed)
}

/// Names of what exists for `prefix`: netns, root links, its cgroup and pin
/// directories.
pub(crate) fn leftovers(prefix: &Prefix) -> Result<Vec<String>> {
    let mut found: Vec<String> = owned(prefix, netns::list())?
        .into_iter()
        .map(|ns| format!("netns {ns}"))
        .collect();
    found.extend(
        owned(prefix, root_links())?
            .into_iter()
            .map(|l| format!("link {l}")),
    );
    let dirs = [
        cgroup2_root()?.join(prefix.as_str()),
        bpffs::prefix_dir(prefix),
    ];
    found.extend(
        dirs.iter()
            .filter(|d| d.exists())
            .map(|d| d.display().to_string()),
    );
    Ok(found)
}

/// Every prefix that owns a netns, root link, cgroup or pin directory.
fn all_prefixes() -> Result<BTreeSet<Prefix>> {
    let mut names = netns::list()?;
    names.extend(root_links()?);
    names.extend(dir_names(&cgroup2_root()?)?);
    names.extend(dir_names(Path::new(BPFFS_ROOT))?);
    Ok(names.iter().filter_map(|n| Prefix::owner_of(n)).collect())
}

fn owned(prefix: &Prefix, names: Result<Vec<String>>) -> Result<Vec<String>> {
    names.map(|names| names.into_iter().filter(|n| prefix.owns(n)).collect())
}

/// Link names in the root netns (`ip -o link` prints `7: name@peer: <…>`).
fn root_links() -> Result<Vec<String>> {
    Ok(ip("-o link show")?
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect())
}

fn dir_names(dir: &Path) -> Result<Vec<String>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(HarnessError::io(
            format!("cannot list {}", dir.display()),
            e,
        )),
    }
}

fn is_populated(cgroup: &Path) -> bool {
    fs::read_to_string(cgroup.join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l == "populated 1"))
}

/// The blackhole protects the host only while a cluster is up; it goes with
/// the last skiff link.
fn remove_blackhole_if_unused(removed: &mut Vec<String>) -> Result<()> {
    if root_links()?.iter().any(|l| Prefix::owner_of(l).is_some()) {
        return Ok(());
    }
    let cidrs = [
        ("-4", SERVICE_CIDR.to_string()),
        ("-6", SERVICE_CIDR_V6.to_owned()),
    ];
    for (family, cidr) in cidrs {
        if ip(&format!(
            "{family} route show exact {cidr} proto {ROUTE_PROTO}"
        ))?
        .trim()
        .is_empty()
        {
            continue;
        }
        ip(&format!(
            "{family} route delete blackhole {cidr} proto {ROUTE_PROTO}"
        ))?;
        removed.push(format!("route blackhole {cidr}"));
    }
    Ok(())
}
