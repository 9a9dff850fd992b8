//! `skiff-control snapshot save|restore` and the server's scheduled
//! snapshot flags, named as k3s names them.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use skiff_etcd::kv::ClientTls;
use skiff_etcd::launcher::{EtcdConfig, MEMBER_NAME};
use skiff_etcd::snapshot::RestoredMember;

use super::archive::{self, RestoreTarget};
use super::schedule::{DEFAULT_CRON, DEFAULT_RETENTION, SnapshotSchedule};
use crate::etcd_flags::EtcdFlags;
use crate::kinds::Schedule;

/// skiff-control's default --data-dir.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/skiff-control";

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Saves a snapshot of etcd (through its maintenance API) and the PKI
    /// into one archive file.
    Save(SaveArgs),
    /// Restores an archive into fresh data directories for etcd and
    /// skiff-control (as k3s's --cluster-reset-restore-path); start them
    /// on those directories afterwards.
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// The archive to write.
    file: PathBuf,
    #[command(flatten)]
    etcd: EtcdFlags,
    /// skiff-control's data directory, whose pki/ is saved.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive `snapshot save` wrote.
    file: PathBuf,
    /// skiff-control's new data directory (absent or empty); the PKI goes
    /// to its pki/.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// etcd's new data directory (absent or empty) [default: DATA_DIR/etcd].
    #[arg(long, value_name = "DIR")]
    etcd_data_dir: Option<PathBuf>,
    /// The name the restored etcd member runs with (its --name).
    #[arg(long, value_name = "NAME", default_value = MEMBER_NAME)]
    etcd_name: String,
    /// The peer URL the restored etcd member advertises.
    #[arg(long, value_name = "URL", default_value_t = default_peer_url())]
    etcd_peer_url: String,
}

fn default_peer_url() -> String {
    EtcdConfig::standard("", &[]).peer_url()
}

/// Runs `skiff-control snapshot ...`.
pub async fn run(command: SnapshotCommand) -> Result<()> {
    match command {
        SnapshotCommand::Save(args) => save(args).await,
        SnapshotCommand::Restore(args) => restore(args),
    }
}

async fn save(args: SaveArgs) -> Result<()> {
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let tls = args.etcd.tls();
    let saved = archive::save(
        &args.etcd.etcd,
        tls.as_ref(),
        &args.data_dir,
        &args.file,
        |received, total| {
            if terminal {
                eprint!(
                    "\rsnapshot: {} of {} MiB ({}%)",
                    mib(received),
                    mib(total),
                    received * 100 / total.max(1)
                );
                let _ = std::io::stderr().flush();
            }
        },
    )
    .await
    .with_context(|| format!("saving {}", args.file.display()))?;
    if terminal {
        eprintln!();
    }
    println!(
        "saved {}: etcd snapshot {} MiB (SHA-256 checked) and {} PKI files in {:.1} s",
        args.file.display(),
        mib(saved.etcd_bytes),
        saved.pki_files,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn restore(args: RestoreArgs) -> Result<()> {
    let started = Instant::now();
    let target = RestoreTarget {
        etcd_data_dir: args
            .etcd_data_dir
            .unwrap_or_else(|| args.data_dir.join("etcd")),
        data_dir: args.data_dir,
        member: RestoredMember {
            name: args.etcd_name,
            peer_url: args.etcd_peer_url,
        },
    };
    let restored = archive::restore(&args.file, &target)?;
    println!(
        "restored {} MiB of etcd data into {} (member {} at {}) and {} PKI files into {} in {:.1} s; \
         start etcd with --data-dir {} and skiff-control with --data-dir {}",
        mib(restored.database_bytes),
        target.etcd_data_dir.display(),
        target.member.name,
        target.member.peer_url,
        restored.pki_files,
        target.data_dir.join(super::PKI_DIR).display(),
        started.elapsed().as_secs_f64(),
        target.etcd_data_dir.display(),
        target.data_dir.display(),
    );
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// The server's scheduled snapshots (k3s's flags and defaults).
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// When to save a snapshot: a five-field cron line, in UTC.
    #[arg(long, value_name = "CRON", default_value = DEFAULT_CRON, value_parser = parse_schedule)]
    etcd_snapshot_schedule_cron: Schedule,
    /// How many scheduled snapshots to keep (the oldest go first).
    #[arg(long, value_name = "COUNT", default_value_t = DEFAULT_RETENTION,
          value_parser = clap::value_parser!(u16).range(1..))]
    etcd_snapshot_retention: u16,
    /// Where scheduled snapshots go [default: DATA_DIR/snapshots].
    #[arg(long, value_name = "DIR")]
    etcd_snapshot_dir: Option<PathBuf>,
    /// Take no scheduled snapshots.
    #[arg(long)]
    etcd_disable_snapshots: bool,
}

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    Schedule::new(text, None)
}

impl ScheduleArgs {
    /// The schedule to run, unless disabled.
    pub fn schedule(
        &self,
        data_dir: &Path,
        etcd: &[String],
        etcd_tls: Option<&ClientTls>,
    ) -> Option<SnapshotSchedule> {
        (!self.etcd_disable_snapshots).then(|| SnapshotSchedule {
            schedule: self.etcd_snapshot_schedule_cron.clone(),
            retention: usize::from(self.etcd_snapshot_retention),
            dir: self
                .etcd_snapshot_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("snapshots")),
            data_dir: data_dir.to_owned(),
            etcd: etcd.to_vec(),
            etcd_tls: etcd_tls.cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        schedule: ScheduleArgs,
    }

    fn parse(args: &[&str]) -> Result<Flags, clap::Error> {
        Flags::try_parse_from(std::iter::once("skiff-control").chain(args.iter().copied()))
    }

    #[test]
    fn k3s_defaults_and_refused_values() {
        let flags = parse(&[]).unwrap();
        let schedule = flags
            .schedule
            .schedule(Path::new("/data"), &["http://etcd:2379".to_owned()], None)
            .unwrap();
        assert_eq!(schedule.retention, 5);
        assert_eq!(schedule.dir, Path::new("/data/snapshots"));
        let noon: jiff::Timestamp = "2026-12-06T11:59:00Z".parse().unwrap();
        assert_eq!(
            schedule.schedule.next_after(noon).unwrap().to_string(),
            "2026-12-06T12:00:00Z"
        );
        let disabled = parse(&["--etcd-disable-snapshots"]).unwrap();
        assert!(
            disabled
                .schedule
                .schedule(Path::new("/d"), &[], None)
                .is_none()
        );
        for refused in [
            ["--etcd-snapshot-retention", "0"],
            ["--etcd-snapshot-schedule-cron", "every noon"],
        ] {
            let error = parse(&refused).unwrap_err();
            assert!(error.to_string().contains(refused[0]), "{error}");
        }
    }
}
