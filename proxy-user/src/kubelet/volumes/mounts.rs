//! The mount(2) calls volumes need: tmpfs for memory-backed volumes, bind
//! mounts for subPaths, and knowing whether a path is a mount point
//! (statx's `STATX_ATTR_MOUNT_ROOT`, without following a last symlink).
use std::{ffi::CString, io, os::unix::ffi::OsStrExt, path::Path};

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mounts a tmpfs at `target` (mode 0777 unless told, `size=` bytes when
/// given), with nosuid and nodev as the kubelet mounts them.
pub fn tmpfs(target: &Path, mode: u32, size: Option<u64>) -> io::Result<()> {
    let mut options = format!("mode={mode:o}");
    if let Some(size) = size {
        options.push_str(&format!(",size={size}"));
    }
    let target = c_path(target)?;
    let fstype = c"tmpfs";
    let options = CString::new(options).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: every pointer is a NUL-terminated string alive for the call.
    check(unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            options.as_ptr().cast(),
        )
    })
}

/// Bind-mounts `source` (which may be a `/proc/self/fd/N` link, which
/// mount(2) resolves to the open file) onto `target`.
pub fn bind(source: &Path, target: &Path) -> io::Result<()> {
    let source = c_path(source)?;
    let target = c_path(target)?;
    // SAFETY: both paths are NUL-terminated strings alive for the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    })
}

/// Detaches the mount at `target`, never following a symlink there.
pub fn unmount(target: &Path) -> io::Result<()> {
    let target = c_path(target)?;
    // SAFETY: a NUL-terminated path alive for the call.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) })
}

/// Whether `path` is the root of a mount. A missing path is not.
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let c = c_path(path)?;
    // SAFETY: statx fills the zeroed buffer; the path is NUL-terminated.
    let mut stat: libc::statx = unsafe { std::mem::zeroed() };
    let result = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_TYPE,
            &mut stat,
        )
    };
    match check(result) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    }
    let flag = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stat.stx_attributes_mask & flag == 0 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the kernel does not report mount roots (statx, Linux 5.8)",
        ));
    }
    Ok(stat.stx_attributes & flag != 0)
}

/// Unmounts `target` if something is mounted there (every layer of it).
pub fn unmount_all(target: &Path) -> io::Result<()> {
    while is_mount_point(target)? {
        unmount(target)?;
    }
    Ok(())
}
