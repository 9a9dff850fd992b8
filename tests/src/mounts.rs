//! Which file system a path is on (cgroup2? bpffs?), via statfs(2), and
//! detaching what agents mounted below a directory (containers' rootfs,
//! pods' pinned namespaces) before it is removed.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub(crate) const CGROUP_MAGIC: i64 = 0x0027_e0eb;
pub(crate) const CGROUP2_MAGIC: i64 = 0x6367_7270;
pub(crate) const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The `f_type` of the file system mounted at or containing `path`.
pub(crate) fn fs_type(path: &Path) -> io::Result<i64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statfs only writes into the zeroed struct we hand it.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and buf a valid statfs.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut buf) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // f_type's integer type differs between libc targets; the magics fit in all.
    #[allow(clippy::unnecessary_cast)]
    Ok(buf.f_type as i64)
}

/// Detaches every mount below `dir`, deepest first (lazily: a container
/// still running keeps its own view until it dies).
pub fn unmount_below(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // The fifth field is the mount point, with ' ' and '\\' octal-escaped;
    // the directories the harness makes hold neither.
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(dir))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let Ok(c_point) = CString::new(point) else {
            continue;
        };
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c_point.as_ptr(), libc::MNT_DETACH) };
    }
}
