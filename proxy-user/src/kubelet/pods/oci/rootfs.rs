//! A container's root filesystem: the image's unpacked layers as
//! overlayfs lower directories (shared, never written), and an upper and
//! work directory of the container's own, fresh at each start as a
//! restarted Kubernetes container's is.
use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use super::bundle::Bundle;

/// Mounts the overlay of `layers` (bottom first) on the bundle's rootfs.
pub fn mount(bundle: &Bundle, layers: &[PathBuf]) -> io::Result<()> {
    if layers.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the image has no layers",
        ));
    }
    for dir in [bundle.rootfs(), bundle.upper(), bundle.work()] {
        fs::create_dir_all(dir)?;
    }
    // overlayfs lists lower directories top first; a ':' or ',' in a
    // path would split the option string.
    let lower: Vec<String> = layers
        .iter()
        .rev()
        .map(|layer| layer.display().to_string())
        .collect();
    if lower.iter().any(|l| l.contains([',', ':'])) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a layer path holds ',' or ':'",
        ));
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        bundle.upper().display(),
        bundle.work().display()
    );
    let target = c_path(&bundle.rootfs())?;
    let options = CString::new(options).map_err(io::Error::other)?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let mounted = unsafe {
        libc::mount(
            c"overlay".as_ptr(),
            target.as_ptr(),
            c"overlay".as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    match mounted {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Unmounts the rootfs (if mounted) and removes the writable layer.
pub fn remove(bundle: &Bundle) -> io::Result<()> {
    unmount(&bundle.rootfs())?;
    for dir in [bundle.upper(), bundle.work(), bundle.rootfs()] {
        match fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
    }
    Ok(())
}

/// Detaches whatever is mounted on `path`; nothing mounted is fine.
pub fn unmount(path: &Path) -> io::Result<()> {
    let target = c_path(path)?;
    // SAFETY: a NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL | libc::ENOENT) => Ok(()),
        _ => Err(error),
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}
