//! Resets the connected UDP sockets that the socket hooks translated to a
//! backend its frontend no longer has: the `iter/udp` programs (one per
//! family) destroy them
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
    Btf, Ebpf, Pod,
    maps::{HashMap, MapData, MapError},
    programs::Iter,
};
use proxy_common::{
    ORPHANS_CAPACITY, ORPHANS_MAP, ORPHANS6_MAP, OrphanKey, OrphanKey6, SocketReset, SocketReset6,
};

use super::{error::DatapathError, netns};
use crate::sys::iter_ops;

/// The IPv4 iterator (also for IPv6 sockets with IPv4-mapped peers).
const PROGRAM: &str = "skiff_reset_udp";
/// The IPv6 iterator.
const PROGRAM6: &str = "skiff_reset_udp6";

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

/// The orphaned (frontend, backend) pairs of one run, per family.
#[derive(Debug, Default)]
pub struct Orphaned {
    pub v4: Vec<OrphanKey>,
    pub v6: Vec<OrphanKey6>,
}

/// What one reset run did: the sockets reset, and the namespaces an
/// iterator could not run in (the sockets there are left as they were).
#[derive(Debug, Default)]
pub struct ResetOutcome {
    pub resets: Vec<SocketReset>,
    pub resets6: Vec<SocketReset6>,
    /// The pid naming each namespace that failed, and why.
    pub failures: Vec<(u32, io::Error)>,
}

pub struct SocketResetter {
    v4: FamilyResetter<OrphanKey>,
    v6: FamilyResetter<OrphanKey6>,
    cgroup: PathBuf,
}

/// One family's iterator and the map it reads its orphans from.
struct FamilyResetter<K> {
    link: OwnedFd,
    orphans: HashMap<MapData, K, u8>,
}

impl SocketResetter {
    /// Loads the iterator programs and takes the orphans maps out of `ebpf`.
    pub fn load(ebpf: &mut Ebpf, btf: &Btf, cgroup: &Path) -> Result<Self, DatapathError> {
        Ok(Self {
            v4: FamilyResetter::load(ebpf, btf, PROGRAM, ORPHANS_MAP)?,
            v6: FamilyResetter::load(ebpf, btf, PROGRAM6, ORPHANS6_MAP)?,
            cgroup: cgroup.to_path_buf(),
        })
    }

    /// Resets every translated UDP socket connected to one of `orphaned`.
    pub fn reset(&mut self, orphaned: &Orphaned) -> Result<ResetOutcome, ResetError> {
        let mut outcome = ResetOutcome::default();
        if orphaned.v4.is_empty() && orphaned.v6.is_empty() {
            return Ok(outcome);
        }
        let namespaces =
            netns::of_subtree(&self.cgroup).map_err(|cause| ResetError::Namespaces {
                cgroup: self.cgroup.clone(),
                cause,
            })?;
        let (resets, failures) = self.v4.reset(&namespaces, &orphaned.v4)?;
        outcome.resets = resets;
        outcome.failures = failures;
        let (resets6, failures) = self.v6.reset(&namespaces, &orphaned.v6)?;
        outcome.resets6 = resets6;
        outcome.failures.extend(failures);
        Ok(outcome)
    }
}

/// The sockets one family's iterator reset, and the namespaces it could
/// not run in.
type FamilyOutcome<R> = (Vec<R>, Vec<(u32, io::Error)>);

impl<K: Pod> FamilyResetter<K> {
    fn load(
        ebpf: &mut Ebpf,
        btf: &Btf,
        name: &'static str,
        map_name: &'static str,
    ) -> Result<Self, DatapathError> {
        let program_error = |cause| DatapathError::Program { name, cause };
        let program: &mut Iter = ebpf
            .program_mut(name)
            .ok_or(DatapathError::MissingProgram(name))?
            .try_into()
            .map_err(program_error)?;
        program.load("udp", btf).map_err(program_error)?;
        // The link keeps the program loaded once `ebpf` is dropped.
        let link = iter_ops::link(program.fd().map_err(program_error)?.as_fd())
            .map_err(|cause| DatapathError::IterLink { name, cause })?;
        let map = ebpf
            .take_map(map_name)
            .ok_or(DatapathError::MissingMap(map_name))?;
        let orphans = HashMap::try_from(map).map_err(|cause| DatapathError::Map {
            name: map_name,
            cause,
        })?;
        Ok(Self { link, orphans })
    }

    /// Runs the iterator in each of `namespaces` over `orphans`, in
    /// batches the map holds; its records are `R`s.
    fn reset<R: Pod>(
        &mut self,
        namespaces: &[netns::Netns],
        orphans: &[K],
    ) -> Result<FamilyOutcome<R>, ResetError> {
        let (mut resets, mut failures) = (Vec::new(), Vec::new());
        for batch in orphans.chunks(ORPHANS_CAPACITY as usize) {
            let written = self.write(batch);
            if written.is_ok() {
                let runs = netns::run_in_each(namespaces, |_| iter_ops::run(self.link.as_fd()));
                for (netns, run) in namespaces.iter().zip(runs) {
                    match run {
                        Ok(output) => resets.extend(decode::<R>(&output)),
                        Err(error) => failures.push((netns.pid, error)),
                    }
                }
            }
            // Emptied also after a failed write, so the next run starts clean.
            self.clear(batch);
            written?;
        }
        Ok((resets, failures))
    }

    fn write(&mut self, batch: &[K]) -> Result<(), ResetError> {
        batch
            .iter()
            .try_for_each(|orphan| self.orphans.insert(orphan, 0, 0))
            .map_err(ResetError::Map)
    }

    fn clear(&mut self, batch: &[K]) {
        for orphan in batch {
            // Absent if its write failed; nothing else can go wrong here
            // that a later run would not overwrite.
            let _ = self.orphans.remove(orphan);
        }
    }
}

/// The records an iterator wrote, one `R` each.
fn decode<R: Pod>(output: &[u8]) -> impl Iterator<Item = R> + '_ {
    output
        .chunks_exact(size_of::<R>())
        // SAFETY: each chunk holds exactly one record, written by the
        // program from the same `#[repr(C)]` integer-only type.
        .map(|chunk| unsafe { chunk.as_ptr().cast::<R>().read_unaligned() })
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
