//! `cargo xtask backup` and `cargo xtask restore`: `skiff-control snapshot
//! save` and `restore` for the local cluster of `cargo xtask up`, on its
//! etcd (standard ports) and data directories (/var/lib/skiff).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Result, bail};
use clap::Args;
use skiff_tests::{control_binary, control_planes::control_etcd_tls_args};

use crate::{
    build_cmd,
    cluster_cmd::{self, UpArgs},
    cluster_files::{self, DATA_DIR, SUPERVISOR, run_dir},
    setup, sh,
    supervise_cmd::etcd_config,
    utc,
};

#[derive(Args)]
pub struct BackupArgs {
    /// The archive to write [default: skiff-backup-<UTC time>.tar in the
    /// current directory].
    pub file: Option<PathBuf>,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// An archive `cargo xtask backup` (or `skiff-control snapshot save`)
    /// wrote.
    pub file: PathBuf,
    /// Number of nodes of the restored cluster [default: 2].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub nodes: Option<u16>,
    /// Use the binaries as they are: no setup, no build (for tests that
    /// built them already).
    #[arg(long, hide = true)]
    pub no_build: bool,
}

pub fn backup(args: &BackupArgs) -> Result<()> {
    if skiff_tests::Daemon::running_pid(run_dir(), SUPERVISOR)?.is_none() {
        bail!("no local cluster is up: `cargo xtask up` starts one");
    }
    if cluster_files::kept_control_plane_count() > 1 {
        bail!(
            "the local cluster has an HA control plane; back it up with `skiff-control snapshot \
             save` against one member's etcd (see the README's \"Backing up and restoring\")"
        );
    }
    let file = args.file.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "skiff-backup-{}.tar",
            utc::now_rfc3339().replace(':', "")
        ))
    });
    sh::run(
        Command::new(control_binary()?)
            .args(["snapshot", "save"])
            .arg(&file)
            .arg("--etcd")
            .arg(etcd_config().local_endpoint())
            .args(control_etcd_tls_args(&cluster_files::control_data_dir()))
            .arg("--data-dir")
            .arg(cluster_files::control_data_dir()),
    )
}

/// Restores the archive into /var/lib/skiff, which must hold no cluster,
/// then brings the cluster up on it as `up` does after a reboot: the
/// agents start with no state and run the restored pods anew.
pub fn restore(args: &RestoreArgs) -> Result<()> {
    let etcd = etcd_config();
    let control = cluster_files::control_data_dir();
    if etcd.data_dir.exists() || control.exists() {
        bail!("{DATA_DIR} holds a cluster: `cargo xtask down` removes it first");
    }
    if !args.no_build {
        setup::setup()?;
        build_cmd::compile(false)?;
    }
    sh::run(
        Command::new(control_binary()?)
            .args(["snapshot", "restore"])
            .arg(&args.file)
            .arg("--data-dir")
            .arg(&control)
            .arg("--etcd-data-dir")
            .arg(&etcd.data_dir)
            .arg("--etcd-peer-url")
            .arg(etcd.peer_url()),
    )?;
    // A snapshot restores into one etcd member: the restored cluster has
    // one control plane, as k3s's --cluster-reset gives one server.
    cluster_cmd::up(&UpArgs {
        nodes: args.nodes,
        control_planes: Some(1),
        no_build: true,
        zones: Vec::new(),
        dual_stack: false,
    })
}
