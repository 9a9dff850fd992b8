//! hostPath: a node path mounted as it is, after the check its `type`
//! asks for (`DirectoryOrCreate` and `FileOrCreate` make what is missing).
use std::{
    fs,
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

use super::error::VolumeError;

/// Checks (or makes) `path` as `kind` says; the error names the path.
pub fn prepare(path: &str, kind: &str) -> Result<(), VolumeError> {
    if !path.starts_with('/') {
        return Err(VolumeError::HostPathType {
            path: path.to_owned(),
            expected: "an absolute path".to_owned(),
        });
    }
    let at = Path::new(path);
    let mismatch = |expected: &str| VolumeError::HostPathType {
        path: path.to_owned(),
        expected: expected.to_owned(),
    };
    let meta = fs::metadata(at);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(mismatch("a directory")),
            Err(_) => {
                fs::create_dir_all(at).map_err(VolumeError::io(at))?;
                fs::set_permissions(at, fs::Permissions::from_mode(0o755))
                    .map_err(VolumeError::io(at))
            }
        },
        "FileOrCreate" => match meta {
            Ok(meta) if meta.is_file() => Ok(()),
            Ok(_) => Err(mismatch("a file")),
            // As the kubelet: the file is made, its directory is not.
            Err(_) => fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(at)
                .map(drop)
                .map_err(VolumeError::io(at)),
        },
        "Directory" | "File" | "Socket" | "CharDevice" | "BlockDevice" => {
            let Ok(meta) = meta else {
                return Err(mismatch(&format!("an existing {}", noun(kind))));
            };
            let kind_of = meta.file_type();
            let fits = match kind {
                "Directory" => kind_of.is_dir(),
                "File" => kind_of.is_file(),
                "Socket" => kind_of.is_socket(),
                "CharDevice" => kind_of.is_char_device(),
                _ => kind_of.is_block_device(),
            };
            if fits {
                Ok(())
            } else {
                Err(mismatch(noun(kind)))
            }
        }
        other => Err(VolumeError::HostPathType {
            path: path.to_owned(),
            expected: format!("checkable: unknown hostPath type {other:?}"),
        }),
    }
}

fn noun(kind: &str) -> &'static str {
    match kind {
        "Directory" => "a directory",
        "File" => "a file",
        "Socket" => "a socket",
        "CharDevice" => "a character device",
        _ => "a block device",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_checked_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let file = tmp.path().join("f");
        let (dir_s, file_s) = (dir.to_str().unwrap(), file.to_str().unwrap());
        prepare(dir_s, "DirectoryOrCreate").unwrap();
        assert!(dir.is_dir());
        prepare(file_s, "FileOrCreate").unwrap();
        assert!(file.is_file());
        prepare(dir_s, "Directory").unwrap();
        prepare(file_s, "File").unwrap();
        prepare("/dev/null", "CharDevice").unwrap();
        prepare(dir_s, "").unwrap();
        for (path, kind) in [
            (file_s, "Directory"),
            (dir_s, "File"),
            (file_s, "DirectoryOrCreate"),
            (dir_s, "FileOrCreate"),
            (file_s, "Socket"),
            (file_s, "BlockDevice"),
            ("/dev/null", "File"),
            (file_s, "Fifo"),
        ] {
            let error = prepare(path, kind).unwrap_err().to_string();
            assert!(error.contains(path), "{kind}: {error}");
        }
        let missing = tmp.path().join("missing/f");
        assert!(prepare(missing.to_str().unwrap(), "FileOrCreate").is_err());
        assert!(prepare(missing.to_str().unwrap(), "Directory").is_err());
        assert!(prepare("relative", "").is_err());
    }
}
