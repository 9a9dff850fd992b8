//! Scheduled snapshots, as k3s takes them (`--etcd-snapshot-*`): at each
//! time of a cron schedule (in UTC) an archive in a directory, named after
//! that time, and then the oldest removed beyond the retention count.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use skiff_etcd::kv::ClientTls;
use tracing::{error, info};

use super::{BackupError, archive, io_error};
use crate::kinds::Schedule;

/// k3s's default: twice a day, at midnight and noon.
pub const DEFAULT_CRON: &str = "0 */12 * * *";
/// k3s's default: the five newest are kept.
pub const DEFAULT_RETENTION: u16 = 5;
/// Scheduled archives are `skiff-snapshot-<UTC time>.tar`; no other file
/// in the directory is touched.
const FILE_PREFIX: &str = "skiff-snapshot-";
const FILE_SUFFIX: &str = ".tar";

/// What to save, when, and how many to keep.
#[derive(Debug, Clone)]
pub struct SnapshotSchedule {
    pub schedule: Schedule,
    pub retention: usize,
    pub dir: PathBuf,
    /// skiff-control's data directory, whose PKI goes into each archive.
    pub data_dir: PathBuf,
    pub etcd: Vec<String>,
    /// The client identity towards an etcd that serves TLS.
    pub etcd_tls: Option<ClientTls>,
}

/// Takes a snapshot at each scheduled time, forever. A failed snapshot is
/// logged and the next time is awaited.
pub async fn run(config: SnapshotSchedule) {
    loop {
        let now = Timestamp::now();
        let Some(next) = config.schedule.next_after(now) else {
            error!(dir = %config.dir.display(), "the snapshot schedule has no next time; no more scheduled snapshots");
            return;
        };
        info!(dir = %config.dir.display(), next = %next, retention = config.retention, "next scheduled snapshot");
        let wait = Duration::try_from(next.duration_since(now)).unwrap_or_default();
        tokio::time::sleep(wait).await;
        match take(&config, next).await {
            Ok((file, removed)) => info!(
                file = %file.display(),
                removed = removed.len(),
                "scheduled snapshot saved"
            ),
            Err(err) => {
                error!(dir = %config.dir.display(), error = %err, "scheduled snapshot failed")
            }
        }
    }
}

/// Saves the snapshot for the time `at`, then prunes; returns the file
/// and the files removed.
async fn take(
    config: &SnapshotSchedule,
    at: Timestamp,
) -> Result<(PathBuf, Vec<PathBuf>), BackupError> {
    fs::create_dir_all(&config.dir)
        .map_err(io_error(format!("creating {}", config.dir.display())))?;
    let file = config.dir.join(file_name(at));
    archive::save(
        &config.etcd,
        config.etcd_tls.as_ref(),
        &config.data_dir,
        &file,
        |_, _| {},
    )
    .await?;
    let removed = prune(&config.dir, config.retention)?;
    Ok((file, removed))
}

fn file_name(at: Timestamp) -> String {
    format!(
        "{FILE_PREFIX}{}{FILE_SUFFIX}",
        at.strftime("%Y%m%dT%H%M%SZ")
    )
}

/// Removes the oldest scheduled archives in `dir` beyond the newest
/// `retention`; returns what it removed. Their names sort by time.
pub fn prune(dir: &Path, retention: usize) -> Result<Vec<PathBuf>, BackupError> {
    let entries = fs::read_dir(dir).map_err(io_error(format!("reading {}", dir.display())))?;
    let mut scheduled: Vec<PathBuf> = entries
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<io::Result<_>>()
        .map_err(io_error(format!("reading {}", dir.display())))?;
    scheduled.retain(|path| {
        path.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX))
    });
    scheduled.sort();
    let excess = scheduled.len().saturating_sub(retention);
    let removed: Vec<PathBuf> = scheduled.into_iter().take(excess).collect();
    for path in &removed {
        fs::remove_file(path).map_err(io_error(format!("removing {}", path.display())))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_prune_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("skiff-prune-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let schedule = Schedule::new(DEFAULT_CRON, None).unwrap();
        let mut at: Timestamp = "2026-12-30T13:00:00Z".parse().unwrap();
        let mut names = Vec::new();
        for _ in 0..7 {
            at = schedule.next_after(at).unwrap();
            names.push(file_name(at));
            fs::write(dir.join(names.last().unwrap()), "").unwrap();
        }
        assert_eq!(names[0], "skiff-snapshot-20261231T000000Z.tar");
        assert_eq!(names[1], "skiff-snapshot-20261231T120000Z.tar");
        assert_eq!(names[2], "skiff-snapshot-20270101T000000Z.tar");
        fs::write(dir.join("operator-copy.tar"), "").unwrap();

        let removed = prune(&dir, usize::from(DEFAULT_RETENTION)).unwrap();
        assert_eq!(removed, [dir.join(&names[0]), dir.join(&names[1])]);
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected: Vec<String> = names[2..].to_vec();
        expected.push("operator-copy.tar".to_owned());
        expected.sort();
        assert_eq!(left, expected);
        fs::remove_dir_all(&dir).unwrap();
    }
}
