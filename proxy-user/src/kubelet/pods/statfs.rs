//! Which filesystem a path is on (statfs(2)'s `f_type`): a cgroup v2
//! mount, a pinned namespace.
use std::{ffi::CString, path::Path};

/// A cgroup v1 hierarchy.
pub const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
pub const NSFS_MAGIC: i64 = 0x6e73_6673;

pub fn fs_type(path: &Path) -> Option<i64> {
    let path = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statfs(2) fills the zeroed struct; the path outlives the call.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        (libc::statfs(path.as_ptr(), &mut stat) == 0).then_some(stat.f_type as i64)
    }
}
