//! subPath: a path inside a volume, resolved so that nothing a container
//! wrote into the volume can send the mount elsewhere on the node. The
//! path is opened one component at a time with `O_PATH | O_NOFOLLOW`;
//! a symlink met on the way is read and followed by hand only while it
//! stays inside the volume (relative, never above its root). The result
//! is an open file, bind-mounted through `/proc/self/fd/N` onto a path of
//! the agent's, so the mount pins what was checked, not a name.
use std::{
    collections::VecDeque,
    ffi::{CString, OsStr},
    fs, io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Component, Path, PathBuf},
};

use super::{error::VolumeError, mounts};

/// Symlinks followed before giving up, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// A subPath opened inside its volume.
#[derive(Debug)]
pub struct Opened {
    fd: OwnedFd,
    is_dir: bool,
}

impl Opened {
    /// The path mount(2) resolves to the open file.
    fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }
}

/// A subPath as written in the pod: relative, no `..`.
pub fn check(volume: &str, sub_path: &str) -> Result<(), VolumeError> {
    let bad = |why| VolumeError::BadPath {
        volume: volume.to_owned(),
        path: sub_path.to_owned(),
        why,
    };
    if sub_path.starts_with('/') {
        return Err(bad("a subPath must be relative"));
    }
    if Path::new(sub_path)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(bad("a subPath must not contain '..'"));
    }
    Ok(())
}

/// Opens `sub_path` below `root`, creating missing directories on the way
/// as the kubelet does.
pub fn open(root: &Path, volume: &str, sub_path: &str) -> Result<Opened, VolumeError> {
    check(volume, sub_path)?;
    let escape = |why| VolumeError::BadPath {
        volume: volume.to_owned(),
        path: sub_path.to_owned(),
        why,
    };
    let root_fd =
        open_at(None, root.as_os_str(), libc::O_DIRECTORY).map_err(VolumeError::io(root))?;
    // The directories walked so far: `..` in a symlink's target pops one.
    let mut held: Vec<OwnedFd> = vec![root_fd];
    let mut pending: VecDeque<Vec<u8>> = components(sub_path.as_bytes());
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == b".." {
            if held.len() == 1 {
                return Err(escape("a symlink in it leads out of the volume"));
            }
            held.pop();
            continue;
        }
        let parent = held.last().map(|fd| fd.as_raw_fd());
        let name = OsStr::from_bytes(&name);
        let fd = match open_at(parent, name, 0) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                make_dir_at(parent, name).map_err(VolumeError::io(root.join(sub_path)))?;
                open_at(parent, name, 0)
            }
            other => other,
        }
        .map_err(VolumeError::io(root.join(sub_path)))?;
        let kind = file_kind(&fd).map_err(VolumeError::io(root.join(sub_path)))?;
        if kind == libc::S_IFLNK {
            links += 1;
            if links > MAX_LINKS {
                return Err(escape("too many symlinks"));
            }
            let target = read_link(&fd).map_err(VolumeError::io(root.join(sub_path)))?;
            if target.first() == Some(&b'/') {
                return Err(escape("a symlink in it is absolute"));
            }
            for component in components(&target).into_iter().rev() {
                pending.push_front(component);
            }
            continue;
        }
        if kind != libc::S_IFDIR && !pending.is_empty() {
            return Err(escape(
                "a component that is not a directory has more after it",
            ));
        }
        held.push(fd);
    }
    let fd = held.pop().expect("the root is always held");
    let is_dir = file_kind(&fd).map_err(VolumeError::io(root))? == libc::S_IFDIR;
    Ok(Opened { fd, is_dir })
}

/// Bind-mounts an opened subPath onto `target` (made as an empty file or
/// directory to match), replacing whatever an earlier start mounted there.
pub fn pin(opened: &Opened, target: &Path) -> Result<(), VolumeError> {
    let io = VolumeError::io(target);
    mounts::unmount_all(target).map_err(VolumeError::io(target))?;
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(VolumeError::io(parent))?;
    }
    let made = match (fs::symlink_metadata(target), opened.is_dir) {
        (Ok(meta), true) if meta.is_dir() => Ok(()),
        (Ok(meta), false) if meta.is_file() => Ok(()),
        (Ok(_), _) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a different kind of file is in the way",
        )),
        (Err(_), true) => fs::create_dir(target),
        (Err(_), false) => fs::File::create(target).map(drop),
    };
    made.and_then(|()| mounts::bind(&opened.proc_path(), target))
        .map_err(io)
}

fn components(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name holds a NUL byte"))
}

/// `openat(parent, name, O_PATH | O_NOFOLLOW | flags)`; without a parent,
/// `name` is a path opened from the agent's view (the volume's root).
fn open_at(parent: Option<i32>, name: &OsStr, flags: i32) -> io::Result<OwnedFd> {
    let name = c_name(name)?;
    let flags = libc::O_PATH
        | libc::O_CLOEXEC
        | flags
        | if parent.is_some() {
            libc::O_NOFOLLOW
        } else {
            0
        };
    // SAFETY: a NUL-terminated name; the returned fd is owned from here.
    let fd = unsafe { libc::openat(parent.unwrap_or(libc::AT_FDCWD), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn make_dir_at(parent: Option<i32>, name: &OsStr) -> io::Result<()> {
    let name = c_name(name)?;
    // SAFETY: a NUL-terminated name relative to a descriptor we hold.
    let result = unsafe { libc::mkdirat(parent.unwrap_or(libc::AT_FDCWD), name.as_ptr(), 0o755) };
    if result == 0 {
        Ok(())
    } else {
        let error = io::Error::last_os_error();
        // Someone else made it first: fine, it is opened next.
        if error.kind() == io::ErrorKind::AlreadyExists {
            Ok(())
        } else {
            Err(error)
        }
    }
}

fn file_kind(fd: &OwnedFd) -> io::Result<libc::mode_t> {
    // SAFETY: fstat fills the zeroed buffer from a descriptor we hold.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.st_mode & libc::S_IFMT)
}

/// The target of the symlink `fd` was opened on (`O_PATH | O_NOFOLLOW`).
fn read_link(fd: &OwnedFd) -> io::Result<Vec<u8>> {
    let mut buffer = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: an empty name reads the link the descriptor refers to, into
    // a buffer of the length given.
    let length = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    if length < 0 {
        return Err(io::Error::last_os_error());
    }
    buffer.truncate(length as usize);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn volume() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("data/logs")).unwrap();
        fs::write(root.join("data/app.conf"), "port=80").unwrap();
        fs::create_dir(root.join("..2026_01_01")).unwrap();
        fs::write(root.join("..2026_01_01/key"), "value").unwrap();
        symlink("..2026_01_01", root.join("..data")).unwrap();
        symlink("..data/key", root.join("key")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        symlink("../..", root.join("data/up")).unwrap();
        symlink("data/../data/app.conf", root.join("inside")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        tmp
    }

    fn read(opened: &Opened) -> String {
        fs::read_to_string(opened.proc_path()).unwrap()
    }

    #[test]
    fn paths_inside_the_volume_open() {
        let tmp = volume();
        let root = tmp.path();
        assert_eq!(read(&open(root, "v", "data/app.conf").unwrap()), "port=80");
        assert_eq!(
            read(&open(root, "v", "key").unwrap()),
            "value",
            "configMap keys are links through ..data"
        );
        assert_eq!(read(&open(root, "v", "inside").unwrap()), "port=80");
        assert!(open(root, "v", "data/logs").unwrap().is_dir);
        let made = open(root, "v", "data/new/dir").unwrap();
        assert!(
            made.is_dir && root.join("data/new/dir").is_dir(),
            "missing directories are made"
        );
    }

    #[test]
    fn paths_out_of_the_volume_are_refused() {
        let tmp = volume();
        let root = tmp.path();
        // The volume's parent is the shared temporary directory: only an `x`
        // this test made there counts.
        let outside = root.parent().unwrap().join("x");
        let outside_before = outside.exists();
        for bad in [
            "/etc",
            "../x",
            "data/../../x",
            "etc/passwd",
            "data/up/x",
            "loop",
            "data/app.conf/x",
        ] {
            let error = open(root, "v", bad).unwrap_err();
            assert!(
                matches!(error, VolumeError::BadPath { .. }),
                "{bad}: {error}"
            );
        }
        assert!(!root.join("x").exists() && outside.exists() == outside_before);
    }

    /// Unmounts in the end, even when an assertion fails first.
    struct Unmount(PathBuf);

    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = mounts::unmount_all(&self.0);
        }
    }

    #[test]
    fn a_pinned_subpath_is_the_file_checked_not_its_name() {
        let tmp = volume();
        let root = tmp.path();
        let target = root.join("pinned/conf");
        let opened = open(root, "v", "data/app.conf").unwrap();
        let _unmount = Unmount(target.clone());
        pin(&opened, &target).unwrap();
        assert!(mounts::is_mount_point(&target).unwrap());
        // Swapping the name for a symlink afterwards changes nothing.
        fs::rename(root.join("data/app.conf"), root.join("data/old.conf")).unwrap();
        symlink("/etc/hostname", root.join("data/app.conf")).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "port=80");
        pin(&opened, &target).unwrap();
        mounts::unmount_all(&target).unwrap();
        assert!(!mounts::is_mount_point(&target).unwrap());
    }
}
