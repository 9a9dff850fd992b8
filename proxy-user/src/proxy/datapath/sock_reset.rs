//! Resets the connected UDP sockets that the socket hooks translated to a
//! backend its frontend no longer has: the `iter/udp` program destroys them
//! (the application gets `ECONNABORTED` and connects again, to a live
//! backend). The agent lists the orphaned (frontend, backend) pairs in a
//! map and runs the iterator in the network namespace of every process in
//! the node's cgroup subtree, where the translated sockets live.
use std::{
    io,
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
};

use aya::{
    Btf, Ebpf,
    maps::{HashMap, MapData, MapError},
    programs::Iter,
};
use proxy_common::{ORPHANS_CAPACITY, ORPHANS_MAP, OrphanKey, SocketReset};

use super::{error::DatapathError, netns};
use crate::sys::iter_ops;

const PROGRAM: &str = "skiff_reset_udp";

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error("writing the orphaned backends")]
    Map(#[source] MapError),
    #[error("finding the pods' network namespaces under {cgroup}")]
    Namespaces {
        cgroup: PathBuf,
        #[source]
        cause: io::Error,
    },
}

/// What one reset run did: the sockets reset, and the namespaces the
/// iterator could not run in (the sockets there are left as they were).
#[derive(Debug, Default)]
pub struct ResetOutcome {
    pub resets: Vec<SocketReset>,
    /// The pid naming each namespace that failed, and why.
    pub failures: Vec<(u32, io::Error)>,
}

pub struct SocketResetter {
    link: OwnedFd,
    orphans: HashMap<MapData, OrphanKey, u8>,
    cgroup: PathBuf,
}

impl SocketResetter {
    /// Loads the iterator program and takes the orphans map out of `ebpf`.
    pub fn load(ebpf: &mut Ebpf, btf: &Btf, cgroup: &Path) -> Result<Self, DatapathError> {
        let program_error = |cause| DatapathError::Program {
            name: PROGRAM,
            cause,
        };
        let program: &mut Iter = ebpf
            .program_mut(PROGRAM)
            .ok_or(DatapathError::MissingProgram(PROGRAM))?
            .try_into()
            .map_err(program_error)?;
        program.load("udp", btf).map_err(program_error)?;
        // The link keeps the program loaded once `ebpf` is dropped.
        let link =
            iter_ops::link(program.fd().map_err(program_error)?.as_fd()).map_err(|cause| {
                DatapathError::IterLink {
                    name: PROGRAM,
                    cause,
                }
            })?;
        let map = ebpf
            .take_map(ORPHANS_MAP)
            .ok_or(DatapathError::MissingMap(ORPHANS_MAP))?;
        let orphans = HashMap::try_from(map).map_err(|cause| DatapathError::Map {
            name: ORPHANS_MAP,
            cause,
        })?;
        Ok(Self {
            link,
            orphans,
            cgroup: cgroup.to_path_buf(),
        })
    }

    /// Resets every translated UDP socket connected to one of `orphans`.
    pub fn reset(&mut self, orphans: &[OrphanKey]) -> Result<ResetOutcome, ResetError> {
        let mut outcome = ResetOutcome::default();
        if orphans.is_empty() {
            return Ok(outcome);
        }
        let namespaces =
            netns::of_subtree(&self.cgroup).map_err(|cause| ResetError::Namespaces {
                cgroup: self.cgroup.clone(),
                cause,
            })?;
        for batch in orphans.chunks(ORPHANS_CAPACITY as usize) {
            let written = self.write(batch);
            if written.is_ok() {
                let runs = netns::run_in_each(&namespaces, |_| iter_ops::run(self.link.as_fd()));
                for (netns, run) in namespaces.iter().zip(runs) {
                    match run {
                        Ok(output) => outcome.resets.extend(decode(&output)),
                        Err(error) => outcome.failures.push((netns.pid, error)),
                    }
                }
            }
            // Emptied also after a failed write, so the next run starts clean.
            self.clear(batch);
            written?;
        }
        Ok(outcome)
    }

    fn write(&mut self, batch: &[OrphanKey]) -> Result<(), ResetError> {
        batch
            .iter()
            .try_for_each(|orphan| self.orphans.insert(orphan, 0, 0))
            .map_err(ResetError::Map)
    }

    fn clear(&mut self, batch: &[OrphanKey]) {
        for orphan in batch {
            // Absent if its write failed; nothing else can go wrong here
            // that a later run would not overwrite.
            let _ = self.orphans.remove(orphan);
        }
    }
}

/// The records the iterator wrote, one `SocketReset` each.
fn decode(output: &[u8]) -> impl Iterator<Item = SocketReset> + '_ {
    output
        .chunks_exact(size_of::<SocketReset>())
        // SAFETY: each chunk holds exactly one record, written by the
        // program from the same `#[repr(C)]` integer-only type.
        .map(|chunk| unsafe { chunk.as_ptr().cast::<SocketReset>().read_unaligned() })
}

#[cfg(test)]
mod tests {
    use proxy_common::{Backend, PROTO_UDP, ServiceKey};

    use super::*;

    #[test]
    fn decodes_back_to_back_records() {
        let record = |cookie| SocketReset {
            cookie,
            frontend: ServiceKey {
                address: 1,
                port: 53u16.to_be(),
                protocol: PROTO_UDP,
                pad: 0,
            },
            backend: Backend {
                address: 2,
                port: 5353u16.to_be(),
                protocol: PROTO_UDP,
                pad: 0,
            },
            local_address: 3,
            local_port: 40000,
            pad: 0,
            result: 0,
            pad2: 0,
        };
        let records = [record(7), record(8)];
        // SAFETY: reading the bytes of plain integer structs.
        let bytes = unsafe {
            std::slice::from_raw_parts(records.as_ptr().cast::<u8>(), size_of_val(&records))
        };
        let decoded: Vec<SocketReset> = decode(bytes).collect();
        assert_eq!(decoded, records);
    }
}
