//! `cargo xtask`: skiff's developer commands (see `cargo xtask --help`).

mod backup_cmd;
mod bench;
mod build_cmd;
// Only a test: it keeps the workspace's crates free of import circles.
#[cfg(test)]
mod circles;
mod cluster_cmd;
mod cluster_files;
mod encryption_config;
mod fuzz_cmd;
mod ha_cluster;
mod images_cmd;
mod pods_ready;
mod setup;
mod sh;
mod supervise_cmd;
mod test_cmd;
mod utc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// skiff's developer commands: set up the machine, build, test, run a local
/// cluster.
///
/// Run them as root from anywhere in the repository. `build` and `test` run
/// `setup` first, so a fresh Debian 12 machine needs no manual step.
#[derive(Parser)]
#[command(bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install whatever is missing to build and run skiff (idempotent)
    ///
    /// Prints nothing when everything is present, one line per thing it
    /// installs, and on failure one line naming the step; the full output of
    /// each step is kept in target/xtask/setup-<step>.log.
    ///
    /// Checks first (it cannot fix these): running as root, kernel BTF at
    /// /sys/kernel/btf/vmlinux, cgroup v2 mounted at /sys/fs/cgroup/unified
    /// or /sys/fs/cgroup. Then installs:
    ///
    /// 1. Debian packages: LLVM 22 and the libraries bpf-linker links
    ///    (llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev),
    ///    protobuf-compiler and libprotobuf-dev (etcd-client's build), etcd-server etcd-client,
    ///    iperf3 iproute2 ethtool iptables nftables bpftool runc python3-venv curl. Package services are not
    ///    started (no etcd left on port 2379).
    ///
    /// 2. bpf-linker, built against LLVM 22 (cargo install, about a minute).
    ///
    /// 3. The nightly toolchain with rust-src (the eBPF build uses
    ///    -Z build-std=core).
    ///
    /// 4. bpffs mounted at /sys/fs/bpf (pinned maps and links live there).
    #[command(verbatim_doc_comment)]
    Setup,

    /// Run setup, then build all binaries (the agent embeds the eBPF programs).
    ///
    /// Runs `cargo build --bins` over the workspace's default members; the
    /// agent's build script builds the eBPF object with nightly and
    /// bpf-linker. Prints the paths of the binaries.
    Build(build_cmd::BuildArgs),

    /// Build the images the examples and tests run, from Debian packages:
    /// skiff/busybox, skiff/echo, skiff/iperf3, redis and
    /// skiff/python-kubernetes
    ///
    /// Each is an OCI archive (`<name>.tar`) that `skiff-agent images
    /// import` and the agent's --image-dir take. Packages are fetched with
    /// `apt-get download` into ~/.cache/skiff/images/debs; an image whose
    /// packages and files did not change is not built again, and the same
    /// inputs always give the same digest. Prints one line per image.
    Images(images_cmd::ImagesArgs),

    /// Run build, then the tests, clippy, rustfmt and a quick benchmark;
    /// print the total time.
    ///
    /// Runs `cargo test [CARGO_TEST_ARGS]` (the end-to-end tests build a
    /// netns cluster and need root), `cargo clippy --all-targets -- -D
    /// warnings`, `cargo fmt --all -- --check` and `cargo xtask bench
    /// --quick` (which fails if any figure is not produced). All four run
    /// even if one fails; the exit code is non-zero if the build or any of
    /// them failed.
    Test(test_cmd::TestArgs),

    /// Run setup and a release build, then benchmark skiff against direct
    /// connections, the real kube-proxy (1.20, iptables mode) and
    /// kube-proxy's nftables rules.
    ///
    /// The first run fetches Debian's kubernetes source package and builds
    /// kube-proxy (about two minutes); the binary is cached in
    /// ~/.cache/skiff/kube-proxy/. On a 2-node netns cluster: ClusterIP TCP
    /// throughput (iperf3), new connections per second and request/response
    /// latency (direct, kube-proxy, nftables, skiff socket LB); NodePort UDP
    /// packets per second from the outside client (kube-proxy, nftables,
    /// skiff tc, skiff XDP); then a scale sweep over N = 1, 1000, 10 000,
    /// 100 000 Services (full sync time, change-to-datapath p99, agent RSS,
    /// connecting to the last Service, kube-proxy's own sync time, nft -f
    /// time). Variants alternate in every round; medians are reported as
    /// ratios to a baseline of the same run.
    ///
    /// Writes bench/results/<date>.json, docs/BENCHMARKS.md and
    /// docs/bench/*.svg, printing one line per step; about 15 minutes.
    /// Fails if any figure was not produced. Run it on a quiet machine.
    Bench(bench::BenchArgs),

    /// Bring up a local cluster, or repair it: etcd, N nodes with a
    /// skiff-agent each, skiff-control, example backends and Services.
    ///
    /// Each node is a network namespace running its own skiff-agent. A
    /// detached supervisor runs etcd, skiff-control and the agents and
    /// restarts any that exits (its log, /var/log/skiff/supervisor.log, says
    /// which, how it exited and how often). The data (etcd, skiff-control's
    /// PKI and kubeconfig, the agents' pod addresses) is in /var/lib/skiff,
    /// so after a reboot or a crash `up` rebuilds the network and brings
    /// every object back, pods on the same addresses. On a healthy cluster
    /// `up` changes nothing and says so. When the cluster is up, prints the
    /// kubeconfig path and a command to try. Tear it down with `down`.
    Up(cluster_cmd::UpArgs),

    /// Stop the local cluster and remove everything skiff created, found by
    /// the name prefix `skiff`; its data too, unless --keep-data.
    ///
    /// Stops the supervisor first, then its daemons, then removes network
    /// namespaces, links, cgroups, bpffs pins and processes: after `down`
    /// the machine is as clean as before `up`. Plain `down` also removes the
    /// cluster's data (/var/lib/skiff) and logs (/var/log/skiff); with
    /// --keep-data both stay, and the next `up` brings every object back.
    /// Says which it did.
    Down(cluster_cmd::DownArgs),

    /// Save the local cluster: an etcd snapshot and skiff-control's PKI in
    /// one archive (`skiff-control snapshot save`).
    Backup(backup_cmd::BackupArgs),

    /// Restore an archive of `backup` into a fresh local cluster: after
    /// `down`, restores etcd's data and the PKI into /var/lib/skiff
    /// (`skiff-control snapshot restore`), then runs `up` on them.
    Restore(backup_cmd::RestoreArgs),

    /// Keep the local cluster's daemons running (started by `up`).
    #[command(hide = true)]
    Supervise(supervise_cmd::SuperviseArgs),

    /// Run a program of this machine's as a pod of the local cluster.
    ///
    /// The program (from PATH, or the workspace's skiff-echo and skiff-load)
    /// runs in the pod's network namespace and cgroup but not in its
    /// container, so host tools reach what the pod reaches, and the
    /// socket-level load balancer applies: connecting to a ClusterIP reaches
    /// a backend. To run a command inside the container, use `kubectl exec`.
    Exec(cluster_cmd::ExecArgs),

    /// Fuzz skiff's decoders with cargo-fuzz: request bodies through
    /// validation, patches, selectors and the agent's etcd records
    ///
    /// Installs cargo-fuzz if missing, then runs each target of fuzz/ (or
    /// only --target) with the pinned nightly (proxy-ebpf/toolchain) for
    /// --seconds, starting from the seed corpus in fuzz/corpus/<target>/.
    /// Builds go to fuzz/target. Fails if a target crashes, naming the
    /// reproducer in fuzz/artifacts/<target>/.
    Fuzz(fuzz_cmd::FuzzArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Setup => setup::setup(),
        Command::Build(args) => build_cmd::build(&args),
        Command::Images(args) => images_cmd::images(&args),
        Command::Test(args) => test_cmd::test(&args),
        Command::Bench(args) => bench::bench(&args),
        Command::Up(args) => cluster_cmd::up(&args),
        Command::Down(args) => cluster_cmd::down(&args),
        Command::Backup(args) => backup_cmd::backup(&args),
        Command::Restore(args) => backup_cmd::restore(&args),
        Command::Supervise(args) => supervise_cmd::supervise_cmd(&args),
        Command::Exec(args) => cluster_cmd::exec(&args),
        Command::Fuzz(args) => fuzz_cmd::fuzz(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
