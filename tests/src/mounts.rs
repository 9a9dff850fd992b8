//! Which file system a path is on (cgroup2? bpffs?), via statfs(2).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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
