//! Writing and restoring the backup archive (see the module above for its
//! layout).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use skiff_etcd::kv::ClientTls;
use skiff_etcd::snapshot::{self, RestoredMember};

use super::{BackupError, ETCD_ENTRY, ETCD_PKI_DIR, PKI_DIR, io_error};

/// What a save wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    /// The etcd snapshot's size: the database and its hash.
    pub etcd_bytes: u64,
    pub pki_files: usize,
}

/// Saves a snapshot of the etcd at `endpoints` and the PKI of
/// skiff-control's `data_dir` into the archive `file`, calling
/// `progress(received, total)` as etcd's snapshot arrives (its hash is
/// checked as it does). The archive appears complete or not at all: it is
/// written beside `file` and renamed.
pub async fn save(
    endpoints: &[String],
    tls: Option<&ClientTls>,
    data_dir: &Path,
    file: &Path,
    progress: impl FnMut(u64, u64),
) -> Result<Saved, BackupError> {
    let database = sibling(file, ".etcd.part");
    let result = save_via(endpoints, tls, data_dir, file, &database, progress).await;
    // Gone already on success; on failure a partial stream.
    let _ = fs::remove_file(&database);
    result
}

async fn save_via(
    endpoints: &[String],
    tls: Option<&ClientTls>,
    data_dir: &Path,
    file: &Path,
    database: &Path,
    progress: impl FnMut(u64, u64),
) -> Result<Saved, BackupError> {
    let mut out = io::BufWriter::new(
        File::create(database).map_err(io_error(format!("creating {}", database.display())))?,
    );
    let etcd_bytes = snapshot::save(endpoints, tls, &mut out, progress).await?;
    out.into_inner()
        .map_err(|error| error.into_error())
        .and_then(|file| file.sync_all())
        .map_err(io_error(format!("writing {}", database.display())))?;
    let (data_dir, file, database) = (data_dir.to_owned(), file.to_owned(), database.to_owned());
    // Reading and writing the files blocks; the scheduled save runs inside
    // the server.
    tokio::task::spawn_blocking(move || {
        let pki_files = write_archive(&data_dir, &file, &database)?;
        fs::remove_file(&database).map_err(io_error(format!("removing {}", database.display())))?;
        Ok(Saved {
            etcd_bytes,
            pki_files,
        })
    })
    .await
    .map_err(|error| BackupError::Io {
        what: "writing the archive".to_owned(),
        source: io::Error::other(error),
    })?
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// The PKI's files, by name.
fn pki_files(data_dir: &Path) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let dir = data_dir.join(PKI_DIR);
    let mut files = Vec::new();
    files_in(&dir, "", &mut files).map_err(|error| match error {
        BackupError::Io { what, source } if source.kind() == io::ErrorKind::NotFound => {
            BackupError::Io {
                what: format!(
                    "{what} (is {} skiff-control's --data-dir?)",
                    data_dir.display()
                ),
                source,
            }
        }
        other => other,
    })?;
    files.sort();
    Ok(files)
}

/// The regular files of `dir` as `<prefix><name>`, and of its
/// [`ETCD_PKI_DIR`] (only at the top) as `etcd/<name>`.
fn files_in(
    dir: &Path,
    prefix: &str,
    files: &mut Vec<(String, PathBuf)>,
) -> Result<(), BackupError> {
    let entries = fs::read_dir(dir).map_err(io_error(format!("reading {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_error(format!("reading {}", dir.display())))?;
        let kind = entry
            .file_type()
            .map_err(io_error(format!("reading {}", entry.path().display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if kind.is_dir() && prefix.is_empty() && name == ETCD_PKI_DIR {
            files_in(&entry.path(), &format!("{ETCD_PKI_DIR}/"), files)?;
        } else if kind.is_file() {
            files.push((format!("{prefix}{name}"), entry.path()));
        } else {
            return Err(BackupError::Io {
                what: format!("{} is not a regular file", entry.path().display()),
                source: io::ErrorKind::InvalidInput.into(),
            });
        }
    }
    Ok(())
}

fn write_archive(data_dir: &Path, file: &Path, database: &Path) -> Result<usize, BackupError> {
    let pki = pki_files(data_dir)?;
    let partial = sibling(file, ".part");
    let write = || -> io::Result<()> {
        let out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        let mut builder = tar::Builder::new(out);
        builder.append_path_with_name(database, ETCD_ENTRY)?;
        for (name, path) in &pki {
            builder.append_path_with_name(path, format!("{PKI_DIR}/{name}"))?;
        }
        let mut out = builder.into_inner()?;
        out.flush()?;
        out.sync_all()?;
        fs::rename(&partial, file)
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&partial);
        BackupError::Io {
            what: format!("writing {}", file.display()),
            source,
        }
    })?;
    Ok(pki.len())
}

/// Where a snapshot is restored to.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    /// skiff-control's data directory; the PKI goes to its `pki/`.
    pub data_dir: PathBuf,
    /// The data directory of the etcd that will serve the restored data.
    pub etcd_data_dir: PathBuf,
    /// The member that etcd runs as.
    pub member: RestoredMember,
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The restored etcd database's size.
    pub database_bytes: u64,
    pub pki_files: usize,
}

/// Restores the archive `file` into `target`'s directories, which must be
/// absent or empty. The etcd snapshot's hash is checked before etcd's data
/// is made. On failure both directories are left empty.
pub fn restore(file: &Path, target: &RestoreTarget) -> Result<Restored, BackupError> {
    for dir in [&target.data_dir, &target.etcd_data_dir] {
        if !is_absent_or_empty(dir)? {
            return Err(BackupError::NotEmpty(dir.clone()));
        }
    }
    let result = restore_checked(file, target);
    if result.is_err() {
        for dir in [&target.data_dir, &target.etcd_data_dir] {
            let _ = fs::remove_dir_all(dir);
        }
    }
    result
}

fn is_absent_or_empty(dir: &Path) -> Result<bool, BackupError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(error) => Err(BackupError::Io {
            what: format!("reading {}", dir.display()),
            source: error,
        }),
    }
}

fn restore_checked(file: &Path, target: &RestoreTarget) -> Result<Restored, BackupError> {
    let bad = |what: String| BackupError::BadArchive {
        file: file.to_owned(),
        what,
    };
    let pki_dir = target.data_dir.join(PKI_DIR);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&pki_dir)
        .map_err(io_error(format!("creating {}", pki_dir.display())))?;
    let database = target.data_dir.join(".restore-etcd-snapshot.db");
    let archive = File::open(file).map_err(io_error(format!("opening {}", file.display())))?;
    let mut archive = tar::Archive::new(archive);
    let mut found_database = false;
    let mut pki_files = 0;
    let read = io_error(format!("reading {}", file.display()));
    let entries = archive.entries().map_err(read)?;
    for entry in entries {
        let mut entry = entry.map_err(io_error(format!("reading {}", file.display())))?;
        let path = entry
            .path()
            .map_err(io_error(format!("reading {}", file.display())))?
            .into_owned();
        let destination = if path == Path::new(ETCD_ENTRY) {
            found_database = true;
            database.clone()
        } else if let Some(name) = pki_file_name(&path) {
            pki_files += 1;
            let destination = pki_dir.join(name);
            if let Some(parent) = destination.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(io_error(format!("creating {}", parent.display())))?;
            }
            destination
        } else {
            return Err(bad(format!("unexpected entry {}", path.display())));
        };
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&destination)
            .map_err(io_error(format!("creating {}", destination.display())))?;
        io::copy(&mut entry, &mut out)
            .map_err(io_error(format!("writing {}", destination.display())))?;
    }
    if !found_database {
        return Err(bad(format!("no {ETCD_ENTRY}")));
    }
    if !pki_dir.join("ca.crt").exists() || !pki_dir.join("ca.key").exists() {
        return Err(bad(format!("no {PKI_DIR}/ca.crt and {PKI_DIR}/ca.key")));
    }
    let database_bytes = snapshot::verify(&database)?;
    // etcdctl makes the directory itself and refuses one that exists.
    if target.etcd_data_dir.exists() {
        fs::remove_dir(&target.etcd_data_dir).map_err(io_error(format!(
            "removing the empty {}",
            target.etcd_data_dir.display()
        )))?;
    }
    snapshot::restore(&database, &target.etcd_data_dir, &target.member)?;
    fs::remove_file(&database).map_err(io_error(format!("removing {}", database.display())))?;
    Ok(Restored {
        database_bytes,
        pki_files,
    })
}

/// `NAME` for an entry `pki/NAME` or `etcd/NAME` for `pki/etcd/NAME`
/// (plain components), else `None`.
fn pki_file_name(path: &Path) -> Option<&Path> {
    let name = path.strip_prefix(PKI_DIR).ok()?;
    let mut components = name.components();
    match (components.next(), components.next(), components.next()) {
        (Some(Component::Normal(_)), None, None) => Some(name),
        (Some(Component::Normal(dir)), Some(Component::Normal(_)), None) if dir == ETCD_PKI_DIR => {
            Some(name)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Etcd;
    use skiff_etcd::launcher::{ETCD_BINARY, EtcdConfig, EtcdProcess, MEMBER_NAME, free_port};

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("skiff-backup-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A data dir with a PKI: the archive copies the files, whatever
    /// they hold.
    fn control_data_dir(root: &Path) -> PathBuf {
        let data_dir = root.join("control");
        let pki = data_dir.join(PKI_DIR);
        fs::create_dir_all(&pki).unwrap();
        fs::create_dir_all(pki.join(ETCD_PKI_DIR)).unwrap();
        for name in PKI_NAMES {
            fs::write(pki.join(name), format!("{name} of {}", root.display())).unwrap();
        }
        data_dir
    }

    /// The files [`control_data_dir`] writes under `pki/`.
    const PKI_NAMES: [&str; 5] = [
        "ca.crt",
        "ca.key",
        "apiserver.crt",
        "apiserver.key",
        "etcd/ca.key",
    ];

    fn target(root: &Path, peer_port: u16) -> RestoreTarget {
        RestoreTarget {
            data_dir: root.join("restored-control"),
            etcd_data_dir: root.join("restored-etcd"),
            member: RestoredMember {
                name: MEMBER_NAME.to_owned(),
                peer_url: format!("http://127.0.0.1:{peer_port}"),
            },
        }
    }

    #[tokio::test]
    async fn a_restored_archive_serves_the_saved_keys_with_the_same_pki() {
        let root = scratch("round-trip");
        let etcd = Etcd::start();
        let mut client = etcd.client().await;
        client.put("/registry/a", "one", None).await.unwrap();
        let data_dir = control_data_dir(&root);
        let file = root.join("backup.tar");
        let mut last = (0, 0);
        let saved = save(
            std::slice::from_ref(&etcd.url),
            None,
            &data_dir,
            &file,
            |r, t| last = (r, t),
        )
        .await
        .unwrap();
        assert_eq!(last, (saved.etcd_bytes, saved.etcd_bytes));
        assert!(!sibling(&file, ".etcd.part").exists());
        assert_eq!(saved.pki_files, PKI_NAMES.len());
        // Changed after the snapshot: the restore must not have it.
        client.put("/registry/a", "two", None).await.unwrap();

        let (client_port, peer_port) = (free_port().unwrap(), free_port().unwrap());
        let target = target(&root, peer_port);
        let restored = restore(&file, &target).unwrap();
        assert_eq!(restored.pki_files, saved.pki_files);
        assert_eq!(
            restored.database_bytes,
            saved.etcd_bytes - skiff_etcd::snapshot::HASH_LEN
        );
        for name in PKI_NAMES {
            assert_eq!(
                fs::read(target.data_dir.join(PKI_DIR).join(name)).unwrap(),
                fs::read(data_dir.join(PKI_DIR).join(name)).unwrap(),
                "{name}"
            );
        }
        let config = EtcdConfig {
            data_dir: target.etcd_data_dir.clone(),
            client_port,
            peer_port,
            listen_ips: Vec::new(),
            quota_backend_bytes: skiff_etcd::launcher::DEFAULT_QUOTA_BACKEND_BYTES,
            tls: None,
        };
        let restored_etcd =
            EtcdProcess::start(Path::new(ETCD_BINARY), config, &root.join("etcd.log")).unwrap();
        let mut restored_client = skiff_etcd::etcd_client::Client::connect(
            [restored_etcd.config().local_endpoint()],
            None,
        )
        .await
        .unwrap();
        let value = restored_client.get("/registry/a", None).await.unwrap();
        assert_eq!(value.kvs()[0].value(), b"one");
        drop(restored_etcd);
        fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn restore_refuses_a_used_directory_and_a_corrupt_snapshot() {
        let root = scratch("refusals");
        let etcd = Etcd::start();
        let data_dir = control_data_dir(&root);
        let file = root.join("backup.tar");
        save(
            std::slice::from_ref(&etcd.url),
            None,
            &data_dir,
            &file,
            |_, _| {},
        )
        .await
        .unwrap();

        let target = target(&root, free_port().unwrap());
        fs::create_dir_all(&target.etcd_data_dir).unwrap();
        fs::write(target.etcd_data_dir.join("member"), "").unwrap();
        let error = restore(&file, &target).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "refusing to restore into {}: it is not empty",
                target.etcd_data_dir.display()
            )
        );
        fs::remove_dir_all(&target.etcd_data_dir).unwrap();

        // One byte of the database flipped, inside the archive.
        let mut bytes = fs::read(&file).unwrap();
        let at = bytes.len() / 4;
        bytes[at] ^= 0x55;
        fs::write(&file, &bytes).unwrap();
        let error = restore(&file, &target).unwrap_err();
        assert!(
            matches!(
                error,
                BackupError::Etcd(skiff_etcd::snapshot::SnapshotError::HashMismatch { .. })
            ),
            "{error}"
        );
        assert!(!target.etcd_data_dir.exists() && !target.data_dir.exists());
        fs::remove_dir_all(&root).unwrap();
    }
}
