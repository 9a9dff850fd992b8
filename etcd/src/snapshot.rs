//! etcd snapshots: saving one through the maintenance API's snapshot
//! stream, checking the SHA-256 etcd appends to it, and restoring one into
//! a new data directory with Debian's `etcdctl snapshot restore`.
//!
//! A snapshot file is exactly what the stream carries: the bbolt database
//! followed by the SHA-256 of the database (32 bytes), the file
//! `etcdctl snapshot save` writes. Restoring needs etcd's own code (a new
//! cluster and member id written into the database, a WAL and a raft
//! snapshot made for the new member); etcd-client speaks only the gRPC API,
//! so the restore runs etcdctl, the tool etcd ships for it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::kv::{ClientTls, EtcdError};
use sha2::{Digest, Sha256};

/// Where `cargo xtask setup` (Debian's etcd-client) installs etcdctl.
pub const ETCDCTL_BINARY: &str = "/usr/bin/etcdctl";
/// The length of the SHA-256 at the end of a snapshot.
pub const HASH_LEN: u64 = 32;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("etcd snapshot stream: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error(transparent)]
    Tls(#[from] EtcdError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the etcd snapshot stream ended before its SHA-256")]
    Truncated,
    #[error("the etcd snapshot stream's SHA-256 does not match the database it sent")]
    StreamHashMismatch,
    #[error("{}: not an etcd snapshot: {size} bytes", path.display())]
    TooShort { path: PathBuf, size: u64 },
    #[error("{}: the etcd snapshot's SHA-256 does not match its database (corrupt or truncated)", path.display())]
    HashMismatch { path: PathBuf },
    #[error("etcdctl snapshot restore failed ({status}): {stderr}")]
    Restore { status: String, stderr: String },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Io { what, source }
}

/// Streams a snapshot of the etcd at `endpoints` into `out` (a local file:
/// its chunks of 32 KiB are written as they come), calling
/// `progress(received, total)` after each chunk; returns the bytes
/// written (the database and its hash). The database is hashed as it
/// arrives and checked against the hash etcd sends last, so a snapshot
/// that returns is whole.
pub async fn save(
    endpoints: &[String],
    tls: Option<&ClientTls>,
    out: &mut impl Write,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, SnapshotError> {
    let mut options = ConnectOptions::new().with_connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        options = options.with_tls(tls.options()?);
    }
    let mut client = Client::connect(endpoints, Some(options)).await?;
    let mut stream = client.snapshot().await?;
    let mut written = 0u64;
    let mut hasher = Sha256::new();
    // The database's chunks count down to 0 remaining; the hash follows as
    // one message of its own (remaining 0 too).
    let mut database_done = false;
    let mut sent_hash: Vec<u8> = Vec::new();
    while let Some(message) = stream.message().await? {
        let blob = message.blob();
        out.write_all(blob)
            .map_err(io_error("writing the snapshot"))?;
        written += blob.len() as u64;
        if database_done {
            sent_hash.extend_from_slice(blob);
        } else {
            hasher.update(blob);
            database_done = message.remaining_bytes() == 0;
        }
        progress(written, written + message.remaining_bytes());
    }
    out.flush().map_err(io_error("writing the snapshot"))?;
    if sent_hash.len() as u64 != HASH_LEN {
        return Err(SnapshotError::Truncated);
    }
    if hasher.finalize().as_slice() != sent_hash {
        return Err(SnapshotError::StreamHashMismatch);
    }
    Ok(written)
}

/// Checks that the snapshot file at `path` ends with the SHA-256 of what
/// precedes it; returns the database's size.
pub fn verify(path: &Path) -> Result<u64, SnapshotError> {
    let mut file = File::open(path).map_err(io_error(format!("opening {}", path.display())))?;
    let size = file
        .metadata()
        .map_err(io_error(format!("reading {}", path.display())))?
        .len();
    if size <= HASH_LEN {
        return Err(SnapshotError::TooShort {
            path: path.to_owned(),
            size,
        });
    }
    let database = size - HASH_LEN;
    let mut hasher = Sha256::new();
    io::copy(&mut (&mut file).take(database), &mut hasher)
        .map_err(io_error(format!("reading {}", path.display())))?;
    let mut stored = [0u8; HASH_LEN as usize];
    file.read_exact(&mut stored)
        .map_err(io_error(format!("reading {}", path.display())))?;
    if hasher.finalize().as_slice() != stored {
        return Err(SnapshotError::HashMismatch {
            path: path.to_owned(),
        });
    }
    Ok(database)
}

/// The member a snapshot is restored as: the name and peer URL the etcd
/// that will run on the data directory is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredMember {
    pub name: String,
    pub peer_url: String,
}

/// Restores the snapshot file at `snapshot` into `data_dir` (which must
/// not exist) as a one-member cluster of `member`, with
/// `etcdctl snapshot restore`, which checks the hash again.
pub fn restore(
    snapshot: &Path,
    data_dir: &Path,
    member: &RestoredMember,
) -> Result<(), SnapshotError> {
    let output = Command::new(ETCDCTL_BINARY)
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore"])
        .arg(snapshot)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--name", &member.name])
        .args([
            "--initial-cluster",
            &format!("{}={}", member.name, member.peer_url),
        ])
        .args(["--initial-advertise-peer-urls", &member.peer_url])
        .output()
        .map_err(io_error(format!("running {ETCDCTL_BINARY}")))?;
    if !output.status.success() {
        return Err(SnapshotError::Restore {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("skiff-snapshot-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn verify_takes_a_matching_hash_and_refuses_a_changed_byte() {
        let database = b"a database of some bytes".to_vec();
        let mut snapshot = database.clone();
        snapshot.extend_from_slice(&Sha256::digest(&database));
        let good = temp_file("good", &snapshot);
        assert_eq!(verify(&good).unwrap(), database.len() as u64);
        snapshot[3] ^= 1;
        let bad = temp_file("bad", &snapshot);
        assert!(matches!(
            verify(&bad),
            Err(SnapshotError::HashMismatch { .. })
        ));
        let short = temp_file("short", &snapshot[..10]);
        assert!(matches!(
            verify(&short),
            Err(SnapshotError::TooShort { size: 10, .. })
        ));
        for path in [good, bad, short] {
            std::fs::remove_file(path).unwrap();
        }
    }
}
