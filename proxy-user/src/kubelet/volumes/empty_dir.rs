//! emptyDir: a directory of the pod's on the node's disk, or with
//! `medium: Memory` a tmpfs whose size is the `sizeLimit`. On disk the
//! limit is recorded and checked by the refresher (`usage`), which reports
//! a volume over it.
use std::{fs, io, os::unix::fs::MetadataExt as _, os::unix::fs::PermissionsExt as _, path::Path};

use super::{error::VolumeError, mounts};

/// Makes the volume at `dir`; a tmpfs already mounted there (by an agent
/// before a restart) is kept with what it holds.
pub fn prepare(
    dir: &Path,
    memory: bool,
    mode: u32,
    size_limit: Option<u64>,
) -> Result<(), VolumeError> {
    fs::create_dir_all(dir).map_err(VolumeError::io(dir))?;
    if memory {
        if !mounts::is_mount_point(dir).map_err(VolumeError::io(dir))? {
            mounts::tmpfs(dir, mode, size_limit).map_err(VolumeError::io(dir))?;
        }
        return Ok(());
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(VolumeError::io(dir))
}

/// Bytes the files below `dir` take on disk, as `du` counts them: no
/// symlink is followed and no other mount is entered.
pub fn usage(dir: &Path) -> io::Result<u64> {
    let device = fs::symlink_metadata(dir)?.dev();
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in fs::read_dir(&at)? {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Deleted while counting.
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            if meta.dev() != device {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_counts_files_but_not_links_out() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("scratch");
        prepare(&dir, false, 0o777, Some(4096)).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o777
        );
        let empty = usage(&dir).unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/blob"), vec![7u8; 1 << 20]).unwrap();
        std::os::unix::fs::symlink("/usr", dir.join("usr")).unwrap();
        let used = usage(&dir).unwrap();
        assert!(used >= empty + (1 << 20), "{used}");
        assert!(
            used < empty + (2 << 20),
            "the /usr link is not followed: {used}"
        );
    }

    #[test]
    fn memory_volumes_are_tmpfs_of_the_size_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        prepare(&dir, true, 0o777, Some(1 << 20)).unwrap();
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = mounts::unmount_all(self.0);
            }
        }
        let _unmount = Unmount(&dir);
        assert!(mounts::is_mount_point(&dir).unwrap());
        fs::write(dir.join("kept"), "x").unwrap();
        prepare(&dir, true, 0o777, Some(1 << 20)).unwrap();
        assert!(dir.join("kept").exists(), "preparing again keeps the tmpfs");
        let too_big = fs::write(dir.join("big"), vec![0u8; 2 << 20]).unwrap_err();
        assert_eq!(too_big.raw_os_error(), Some(libc::ENOSPC));
        mounts::unmount_all(&dir).unwrap();
        assert!(!mounts::is_mount_point(&dir).unwrap());
    }
}
