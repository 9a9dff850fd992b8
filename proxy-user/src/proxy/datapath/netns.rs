//! The network namespaces of the processes in the node's cgroup subtree
//! (one per pod, as the socket hooks see them), and running work inside
//! each. A socket iterator only walks the namespace it was created in, so
//! whatever must reach the pods' sockets runs once per namespace.
use std::{
    collections::HashSet,
    fs::{self, File},
    io,
    os::{fd::AsRawFd, unix::fs::MetadataExt as _},
    path::Path,
    thread,
};

/// One network namespace, held open by a file of one of its processes.
pub struct Netns {
    file: File,
    /// A process that was in it, to name it in logs.
    pub pid: u32,
    /// The namespace's identity (device and inode of its nsfs file).
    pub id: (u64, u64),
}

/// The distinct network namespaces of the processes in `cgroup` and every
/// cgroup below it. Processes that exit while this runs are skipped.
pub fn of_subtree(cgroup: &Path) -> io::Result<Vec<Netns>> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let mut dirs = vec![cgroup.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for pid in processes(&dir)? {
            let path = format!("/proc/{pid}/ns/net");
            // Gone since cgroup.procs was read.
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let metadata = file.metadata()?;
            let id = (metadata.dev(), metadata.ino());
            if seen.insert(id) {
                found.push(Netns { file, pid, id });
            }
        }
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(found)
}

/// The identity of the calling thread's network namespace, as `Netns::id`.
pub fn own_id() -> io::Result<(u64, u64)> {
    let metadata = fs::metadata("/proc/thread-self/ns/net")?;
    Ok((metadata.dev(), metadata.ino()))
}

fn processes(cgroup: &Path) -> io::Result<Vec<u32>> {
    let procs = match fs::read_to_string(cgroup.join("cgroup.procs")) {
        Ok(procs) => procs,
        // The cgroup was removed while the subtree was walked.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    Ok(procs.lines().filter_map(|line| line.parse().ok()).collect())
}

/// Runs `work` inside each of `namespaces`, in order, on a thread of its
/// own: `setns` moves only the calling thread, and that thread ends with
/// the work, so no other code of the agent ever runs in a pod's namespace.
pub fn run_in_each<T: Send>(
    namespaces: &[Netns],
    work: impl Fn(&Netns) -> io::Result<T> + Sync,
) -> Vec<io::Result<T>> {
    thread::scope(|scope| {
        let worker = scope.spawn(|| {
            namespaces
                .iter()
                .map(|netns| {
                    enter(netns)?;
                    work(netns)
                })
                .collect::<Vec<_>>()
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

fn enter(netns: &Netns) -> io::Result<()> {
    // SAFETY: a plain syscall on a descriptor we hold open.
    if unsafe { libc::setns(netns.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
