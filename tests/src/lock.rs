//! One cluster at a time: the fabric subnet and the root routes are fixed.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;

use crate::error::{HarnessError, Result};

const LOCK_PATH: &str = "/run/skiff-cluster.lock";

/// An exclusive flock on /run/skiff-cluster.lock, released when dropped (or
/// when the process dies, so a crashed test never blocks the next one).
#[derive(Debug)]
pub(crate) struct ClusterLock {
    _file: File,
}

impl ClusterLock {
    /// Blocks until no other cluster in any process holds the lock. flock
    /// locks belong to the open file, so test threads of one process queue
    /// up too.
    pub(crate) fn acquire() -> Result<ClusterLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_PATH)
            .map_err(|e| HarnessError::io(format!("cannot open {LOCK_PATH}"), e))?;
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB)? {
            eprintln!("skiff: waiting for another cluster to finish ({LOCK_PATH})");
            flock(&file, libc::LOCK_EX)?;
        }
        Ok(ClusterLock { _file: file })
    }
}

/// flock(2); Ok(false) when LOCK_NB would have had to wait.
fn flock(file: &File, op: libc::c_int) -> Result<bool> {
    loop {
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(false),
            _ => return Err(HarnessError::io(format!("cannot lock {LOCK_PATH}"), err)),
        }
    }
}
