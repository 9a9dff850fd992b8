//! Backups of a cluster: one archive file (tar) holding an etcd snapshot
//! and skiff-control's PKI, saved on demand (`skiff-control snapshot
//! save`) or on a schedule (`schedule`), and restored into fresh data
//! directories (`skiff-control snapshot restore`).
//!
//! The archive's layout:
//!
//! ```text
//! etcd/snapshot.db    etcd's snapshot: the database, then its SHA-256
//! pki/<file>          each file of <data-dir>/pki (the CA and its key,
//!                     the serving and client certificates and keys)
//! pki/etcd/<file>     each file of <data-dir>/pki/etcd (etcd's CA and its
//!                     key, the member and client certificates and keys)
//! ```
//!
//! The kubeconfig is not kept: skiff-control writes it on every start from
//! the PKI. Agents' state (their pods' addresses) is the nodes', as in
//! k3s: restored pods get new addresses, Services keep theirs (they are
//! in etcd, as are the allocations behind them).

pub mod archive;
pub mod cli;
pub mod schedule;

use std::io;
use std::path::PathBuf;

use skiff_etcd::snapshot::SnapshotError;

/// The etcd snapshot's path in the archive.
pub const ETCD_ENTRY: &str = "etcd/snapshot.db";
/// The directory of the PKI's files in the archive and in the data dir.
pub const PKI_DIR: &str = "pki";
/// The one directory inside [`PKI_DIR`]: etcd's PKI.
pub const ETCD_PKI_DIR: &str = "etcd";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Etcd(#[from] SnapshotError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("refusing to restore into {}: it is not empty", .0.display())]
    NotEmpty(PathBuf),
    #[error("{}: {what}", file.display())]
    BadArchive { file: PathBuf, what: String },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}
