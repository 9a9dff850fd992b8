//! Is the machine as clean as skiff promises to leave it? Looks at the whole
//! machine, not one cluster: any network namespace, root-netns link, cgroup
//! or bpffs pin whose name carries `skiff` once no cluster should exist, and
//! at any time a skiff netns with a default route, a BPF program on the root
//! cgroup v2, or an XDP, tc or TCX BPF program on the machine's real
//! interface (the device of the root netns's default route).
//!
//! Tests take a baseline before they build a cluster and then demand nothing
//! new, so a shared machine's unrelated leftovers do not fail them. Only
//! `ip`/`tc`/`bpftool` show commands and a BPF program query run: nothing is
//! changed or sent.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::Path;
use std::process::Command;

use crate::bpffs::BPFFS_ROOT;
use crate::cgroup::cgroup2_root;
use crate::cmd::{ip, output, run};
use crate::error::{HarnessError, Result};
use crate::lock::ClusterLock;
use crate::netns;

/// What every skiff name carries (`skiff`, `skiff-<4 hex>-node1`, …).
const SKIFF_MARK: &str = "skiff";

/// Where cgroups are searched for names, and how deep: v2 on a hybrid
/// machine, and every v1 hierarchy, which skiff must not touch either.
const CGROUP_ROOTS: [&str; 2] = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];
const CGROUP_DEPTH: usize = 3;
const BPFFS_DEPTH: usize = 3;

/// When the machine is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineCheck {
    /// No cluster should exist: anything named skiff is left over.
    AfterRun,
    /// A cluster is meant to be up: only the routing and attach rules apply.
    DuringRun,
}

/// Everything wrong with the machine, one line each (empty when clean). The
/// lines are stable, so a later call can be compared with a baseline.
///
/// After a run, the check holds the machine-wide cluster lock, so that a
/// cluster another process is building or tearing down meanwhile is not
/// taken for a leftover. It then waits for such a cluster to finish, and
/// must not be called while this process holds a [`Cluster`](crate::Cluster)
/// (it would wait for itself).
pub fn check_machine(check: MachineCheck) -> Result<Vec<String>> {
    let _no_cluster_meanwhile = match check {
        MachineCheck::AfterRun => Some(ClusterLock::acquire()?),
        MachineCheck::DuringRun => None,
    };
    let mut complaints = check_names(SKIFF_MARK, check)?;
    complaints.extend(root_cgroup_programs()?);
    complaints.extend(real_interface_programs()?);
    Ok(complaints)
}

/// The name-based rules for everything whose name contains `mark` (any
/// case): a netns must never have a default route; after a run, none of the
/// netns, links, cgroups and pins may exist at all.
fn check_names(mark: &str, check: MachineCheck) -> Result<Vec<String>> {
    let mut complaints = Vec::new();
    for ns in netns::list()?.into_iter().filter(|n| marked(n, mark)) {
        if check == MachineCheck::AfterRun {
            complaints.push(format!("network namespace left over: {ns}"));
        }
        if has_default_route(&ns)? {
            complaints.push(format!("namespace {ns} has a default route"));
        }
    }
    if check == MachineCheck::AfterRun {
        let mut cgroups = Vec::new();
        for root in CGROUP_ROOTS {
            marked_paths(Path::new(root), mark, CGROUP_DEPTH, true, &mut cgroups);
        }
        cgroups.sort();
        cgroups.dedup();
        complaints.extend(cgroups.iter().map(|d| format!("cgroup left over: {d}")));
        let mut pins = Vec::new();
        marked_paths(Path::new(BPFFS_ROOT), mark, BPFFS_DEPTH, false, &mut pins);
        pins.sort();
        complaints.extend(pins.iter().map(|p| format!("bpffs pin left over: {p}")));
        let links = link_names(&ip("-o link show")?);
        complaints.extend(
            links
                .iter()
                .filter(|l| marked(l, mark))
                .map(|l| format!("link left over in the root netns: {l}")),
        );
    }
    Ok(complaints)
}

fn marked(name: &str, mark: &str) -> bool {
    name.to_lowercase().contains(&mark.to_lowercase())
}

/// A default route in either family: a skiff netns must never reach beyond
/// the cluster. A netns that vanished meanwhile has none.
fn has_default_route(ns: &str) -> Result<bool> {
    for family in ["-4", "-6"] {
        let out = output(Command::new("ip").args(["-n", ns, family, "route", "show", "default"]))?;
        if out.status.success() && !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Collects the paths below `dir` (at most `depth` levels down, symlinks
/// not followed) whose name contains `mark`; `dirs_only` skips files. An
/// unreadable directory (a missing mount, a cgroup removed meanwhile) has
/// nothing to report.
fn marked_paths(dir: &Path, mark: &str, depth: usize, dirs_only: bool, found: &mut Vec<String>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if (kind.is_dir() || !dirs_only) && marked(&entry.file_name().to_string_lossy(), mark) {
            found.push(path.display().to_string());
        }
        if kind.is_dir() {
            marked_paths(&path, mark, depth - 1, dirs_only, found);
        }
    }
}

/// Link names from `ip -o link show` (`7: name@peer: <…>`).
fn link_names(ip_link: &str) -> Vec<String> {
    ip_link
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_owned())
        .collect()
}

/// Agents attach to their node's cgroup, never to the root, where a program
/// would see every socket of the machine.
fn root_cgroup_programs() -> Result<Vec<String>> {
    let root = cgroup2_root()?;
    let mut bpftool = Command::new("bpftool");
    bpftool.arg("-j").arg("cgroup").arg("show").arg(&root);
    let shown = run(&mut bpftool).map_err(|e| match e {
        HarnessError::Spawn { .. } => {
            HarnessError::Environment("bpftool is missing (`cargo xtask setup` installs it)".into())
        }
        other => other,
    })?;
    let programs = cgroup_programs(&shown)?;
    Ok(if programs.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "BPF programs attached to the root cgroup v2 {}: {}",
            root.display(),
            programs.join(", ")
        )]
    })
}

/// `id attach_type name` of each program in `bpftool -j cgroup show` (which
/// prints nothing at all when there is none).
fn cgroup_programs(json: &str) -> Result<Vec<String>> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let programs: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| {
        HarnessError::Environment(format!("bpftool printed unexpected JSON ({e}): {json}"))
    })?;
    Ok(programs
        .iter()
        .map(|p| {
            ["id", "attach_type", "name"]
                .map(|field| p.get(field).map(|v| v.to_string()).unwrap_or_default())
                .join(" ")
        })
        .collect())
}

/// skiff's XDP and tc programs belong on the cluster's veths, never on the
/// device that carries the machine's own traffic.
fn real_interface_programs() -> Result<Vec<String>> {
    let Some(real) = default_route_device(&ip("-o route show default")?) else {
        return Ok(Vec::new());
    };
    let mut complaints = Vec::new();
    let link = run(Command::new("ip").args(["link", "show", "dev", &real]))?;
    if shows_xdp(&link) {
        complaints.push(format!("XDP program on the real interface {real}"));
    }
    for direction in ["ingress", "egress"] {
        let filters = output(Command::new("tc").args(["filter", "show", "dev", &real, direction]))?;
        if filters.status.success() && shows_bpf(&String::from_utf8_lossy(&filters.stdout)) {
            complaints.push(format!(
                "tc BPF filter on the real interface {real} ({direction})"
            ));
        }
    }
    for (direction, attach_type) in TCX_ATTACH_TYPES {
        let count = tcx_programs(&real, attach_type)
            .map_err(|e| HarnessError::io(format!("cannot query TCX {direction} of {real}"), e))?;
        if count > 0 {
            complaints.push(format!(
                "{count} TCX program(s) on the real interface {real} ({direction})"
            ));
        }
    }
    Ok(complaints)
}

/// skiff's per-packet programs attach through TCX, which neither `tc` nor
/// older bpftool versions list: the kernel is asked directly.
const TCX_ATTACH_TYPES: [(&str, u32); 2] = [("ingress", 46), ("egress", 47)];
const BPF_PROG_QUERY: libc::c_long = 16;

/// The `query` member of the kernel's `union bpf_attr` for `BPF_PROG_QUERY`.
#[repr(C)]
#[derive(Default)]
struct ProgQuery {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_count: u32,
    pad: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// How many programs are attached to `interface` (of the caller's netns)
/// at TCX hook `attach_type`. No id buffer is passed: the kernel only counts.
fn tcx_programs(interface: &str, attach_type: u32) -> io::Result<u32> {
    let name =
        CString::new(interface).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a NUL-terminated name that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut query = ProgQuery {
        target_ifindex: ifindex,
        attach_type,
        ..ProgQuery::default()
    };
    // SAFETY: bpf(2) reads and writes only the `size` bytes of `query`, a
    // zeroed attr whose id buffers are null.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_QUERY,
            &mut query as *mut ProgQuery,
            std::mem::size_of::<ProgQuery>(),
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(query.prog_count)
}

/// The device of the first default route in `ip -o route show default`.
fn default_route_device(routes: &str) -> Option<String> {
    routes.lines().find_map(|route| {
        let mut words = route.split_whitespace();
        words.find(|w| *w == "dev")?;
        words.next().map(str::to_owned)
    })
}

/// `ip link show` names an attached XDP program as `xdp`, `xdpgeneric`,
/// `xdpdrv` or `xdpoffload`, and on the next line `prog/xdp id N`.
fn shows_xdp(ip_link: &str) -> bool {
    ip_link
        .split_whitespace()
        .any(|w| w.starts_with("xdp") || w.starts_with("prog/xdp"))
}

fn shows_bpf(tc_filters: &str) -> bool {
    tc_filters.to_lowercase().contains("bpf")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::ip_in;

    /// A namespace, cgroup and pin directory named `mark`, removed when
    /// dropped. The mark is not `skiff`, so clusters of tests running
    /// meanwhile (here or in another process) never see these.
    struct Marked {
        mark: String,
        cgroup: std::path::PathBuf,
        pin: std::path::PathBuf,
    }

    impl Marked {
        fn create() -> Marked {
            let mark = format!("lefttest-{:04x}", rand::random::<u16>());
            netns::add(&mark).unwrap();
            let marked = Marked {
                cgroup: cgroup2_root().unwrap().join(&mark),
                pin: Path::new(BPFFS_ROOT).join(&mark),
                mark,
            };
            fs::create_dir(&marked.cgroup).unwrap();
            fs::create_dir(&marked.pin).unwrap();
            marked
        }
    }

    impl Drop for Marked {
        fn drop(&mut self) {
            let _ = netns::delete(&self.mark);
            let _ = fs::remove_dir(&self.cgroup);
            let _ = fs::remove_dir(&self.pin);
        }
    }

    #[test]
    fn reports_what_carries_the_mark_and_nothing_once_it_is_gone() {
        let marked = Marked::create();
        let mark = marked.mark.clone();
        let found = check_names(&mark, MachineCheck::AfterRun).unwrap();
        assert_eq!(
            found,
            [
                format!("network namespace left over: {mark}"),
                format!("cgroup left over: {}", marked.cgroup.display()),
                format!("bpffs pin left over: {BPFFS_ROOT}/{mark}"),
            ]
        );
        // Case does not hide a name.
        assert_eq!(
            check_names(&mark.to_uppercase(), MachineCheck::AfterRun).unwrap(),
            found
        );
        drop(marked);
        assert_eq!(
            check_names(&mark, MachineCheck::AfterRun).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_default_route_is_reported_even_while_a_cluster_is_up() {
        let marked = Marked::create();
        let mark = marked.mark.clone();
        assert_eq!(
            check_names(&mark, MachineCheck::DuringRun).unwrap(),
            Vec::<String>::new()
        );
        // Via the namespace's own loopback: the route leads nowhere else.
        ip_in(&mark, "route add default dev lo").unwrap();
        assert_eq!(
            check_names(&mark, MachineCheck::DuringRun).unwrap(),
            [format!("namespace {mark} has a default route")]
        );
        assert!(
            check_names(&mark, MachineCheck::AfterRun)
                .unwrap()
                .contains(&format!("namespace {mark} has a default route"))
        );
    }

    #[test]
    fn link_names_drop_the_peer() {
        let out = "1: lo: <LOOPBACK,UP> mtu 65536\n\
                   7: skiff-1a2b-cp@if6: <BROADCAST> mtu 1500\n";
        assert_eq!(link_names(out), ["lo", "skiff-1a2b-cp"]);
    }

    #[test]
    fn root_cgroup_programs_are_listed() {
        assert_eq!(cgroup_programs("").unwrap(), Vec::<String>::new());
        assert_eq!(cgroup_programs("[]").unwrap(), Vec::<String>::new());
        let one = r#"[{"id":42,"attach_type":"cgroup_inet4_connect","attach_flags":"","name":"sock_connect4"}]"#;
        assert_eq!(
            cgroup_programs(one).unwrap(),
            [r#"42 "cgroup_inet4_connect" "sock_connect4""#]
        );
        assert!(cgroup_programs("not json").is_err());
    }

    #[test]
    fn the_real_interface_is_the_default_routes_device() {
        let routes = "default via 192.0.2.1 dev eth0 proto dhcp metric 100\n\
                      default dev wg0 scope link\n";
        assert_eq!(default_route_device(routes).as_deref(), Some("eth0"));
        assert_eq!(
            default_route_device("default dev ppp0").as_deref(),
            Some("ppp0")
        );
        assert_eq!(default_route_device(""), None);
    }

    /// The query's layout is right (the kernel refuses a malformed attr)
    /// and loopback carries no program.
    #[test]
    fn tcx_programs_are_counted() {
        for (_, attach_type) in TCX_ATTACH_TYPES {
            assert_eq!(tcx_programs("lo", attach_type).unwrap(), 0);
        }
        assert!(tcx_programs("no-such-link0", TCX_ATTACH_TYPES[0].1).is_err());
    }

    #[test]
    fn xdp_and_tc_programs_are_recognised() {
        let clean = "4: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 qdisc pfifo_fast state UP\n    link/ether 02:fc:00:00:00:01 brd ff:ff:ff:ff:ff:ff";
        assert!(!shows_xdp(clean));
        let generic = "4: eth0: <BROADCAST,UP> mtu 1400 xdpgeneric qdisc pfifo_fast\n    link/ether 02:fc:00:00:00:01\n    prog/xdp id 42";
        assert!(shows_xdp(generic));
        assert!(!shows_bpf(""));
        assert!(shows_bpf(
            "filter protocol all pref 49152 bpf chain 0 handle 0x1 skiff_nat direct-action"
        ));
    }
}
