//! One cluster at a time: the fabric subnet and the root routes are fixed.
//! A cluster that outlives its creator (`cargo xtask up`) hands the lock to
//! its supervisor, so tests wait for `down` instead of colliding with it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::error::{HarnessError, Result};

const LOCK_PATH: &str = "/run/skiff-cluster.lock";
/// Names the descriptor a child inherits the lock on.
pub(crate) const INHERITED_FD_ENV: &str = "SKIFF_CLUSTER_LOCK_FD";

/// An exclusive flock on /run/skiff-cluster.lock, released when dropped (or
/// when the process dies, so a crashed test never blocks the next one).
#[derive(Debug)]
pub struct ClusterLock {
    file: File,
}

impl ClusterLock {
    /// Blocks until no other cluster in any process holds the lock. flock
    /// locks belong to the open file, so test threads of one process queue
    /// up too.
    pub fn acquire() -> Result<ClusterLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .map_err(|e| HarnessError::io(format!("cannot open {LOCK_PATH}"), e))?;
        if !flock(&file, Path::new(LOCK_PATH), libc::LOCK_EX | libc::LOCK_NB)? {
            eprintln!(
                "skiff: waiting for another cluster to finish ({LOCK_PATH}; \
                 a `cargo xtask up` cluster holds it until `cargo xtask down`)"
            );
            flock(&file, Path::new(LOCK_PATH), libc::LOCK_EX)?;
        }
        Ok(ClusterLock { file })
    }

    /// Holds the lock that process `pid` holds (a persisted cluster's
    /// supervisor), by a copy of its descriptor (pidfd_getfd(2)): once that
    /// process is stopped the lock stays held, so no waiting test takes it
    /// while what the process watched over is torn down.
    pub fn take_over(pid: u32) -> Result<ClusterLock> {
        let fd_dir = format!("/proc/{pid}/fd");
        let entries = fs::read_dir(&fd_dir)
            .map_err(|e| HarnessError::io(format!("cannot list {fd_dir}"), e))?;
        let target: RawFd = entries
            .flatten()
            .find(|e| fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == LOCK_PATH))
            .and_then(|e| e.file_name().to_str()?.parse().ok())
            .ok_or_else(|| {
                HarnessError::NotFound(format!("process {pid} does not hold {LOCK_PATH}"))
            })?;
        let fail = |what: &str| {
            HarnessError::io(
                format!("cannot {what} of process {pid}"),
                io::Error::last_os_error(),
            )
        };
        // SAFETY: pidfd_open(2) and pidfd_getfd(2) only return descriptors;
        // each is checked and owned right after.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if pidfd < 0 {
            return Err(fail("open a pidfd"));
        }
        // SAFETY: as above; `pidfd` is open and closed below.
        let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, target, 0) };
        let copied = if copy < 0 {
            Err(fail("copy the lock descriptor"))
        } else {
            Ok(())
        };
        // SAFETY: closing the pidfd opened above.
        unsafe { libc::close(pidfd as RawFd) };
        copied?;
        // SAFETY: a fresh descriptor (close-on-exec) owned by nothing else.
        let file = unsafe { File::from_raw_fd(copy as RawFd) };
        Ok(ClusterLock { file })
    }

    /// Makes `cmd`'s child hold this lock too: it inherits the locked open
    /// file (flock locks belong to it, not to a process) and finds its
    /// descriptor in `SKIFF_CLUSTER_LOCK_FD`. The lock lasts until both
    /// have closed it, so there is no moment a waiting test could take it.
    pub(crate) fn share_with(&self, cmd: &mut Command) {
        let fd = self.file.as_raw_fd();
        cmd.env(INHERITED_FD_ENV, fd.to_string());
        // SAFETY: the hook only calls fcntl(2) on a descriptor this process
        // keeps open, to let it survive the exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// The lock a parent shared with this process ([`ClusterLock::share_with`]),
    /// checked to be the lock file and closed on exec again, so the
    /// processes this one starts do not hold it.
    pub(crate) fn inherited() -> Result<ClusterLock> {
        let missing = || {
            HarnessError::Environment(format!(
                "no cluster lock inherited (${INHERITED_FD_ENV} names none)"
            ))
        };
        let fd: RawFd = std::env::var(INHERITED_FD_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(missing)?;
        let lock = fs::metadata(LOCK_PATH)
            .map_err(|e| HarnessError::io(format!("cannot stat {LOCK_PATH}"), e))?;
        // SAFETY: fstat on a descriptor number; a closed one fails with EBADF.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        let is_lock_file = unsafe { libc::fstat(fd, &mut stat) } == 0
            && stat.st_dev == lock.dev()
            && stat.st_ino == lock.ino();
        if !is_lock_file {
            return Err(missing());
        }
        // SAFETY: the descriptor is open, is the lock file and is owned by
        // nothing else in this process.
        let file = unsafe { File::from_raw_fd(fd) };
        // SAFETY: fcntl(2) on the descriptor `file` owns.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
            let error = io::Error::last_os_error();
            return Err(HarnessError::io(
                format!("cannot mark {LOCK_PATH} close-on-exec"),
                error,
            ));
        }
        Ok(ClusterLock { file })
    }
}

/// flock(2) on `file`, opened from `path`, retried when a signal
/// interrupts it; Ok(false) when LOCK_NB would have had to wait.
pub(crate) fn flock(file: &File, path: &Path, op: libc::c_int) -> Result<bool> {
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(false),
            _ => {
                return Err(HarnessError::io(
                    format!("cannot lock {}", path.display()),
                    err,
                ));
            }
        }
    }
}
