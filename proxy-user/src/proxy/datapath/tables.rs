//! Typed handles on the service maps, and the one place map writes happen.
use std::os::fd::AsFd as _;

use aya::{
    Ebpf,
    maps::{
        HashMap, IterableMap as _, MapData, MapError, PerCpuHashMap,
        lpm_trie::{Key, LpmTrie},
    },
};
use proxy_common::{
    Backend, BackendId, BackendSlotKey, FrontendStats, MaglevTable, ServiceKey, ServiceValue,
    SourceRange, map_names,
};

use tracing::warn;

use super::{
    error::{DatapathError, WriteError},
    programmed::{MapContents, MapOp},
};
use crate::sys::batch_ops;

/// Entries per batched write: few syscalls, and key and value arrays
/// of a few hundred KiB at most.
const BATCH: usize = 16_384;

pub struct Tables {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    slots: HashMap<MapData, BackendSlotKey, BackendId>,
    backends: HashMap<MapData, BackendId, Backend>,
    stats: PerCpuHashMap<MapData, u32, FrontendStats>,
    maglev: HashMap<MapData, u32, MaglevTable>,
    source_ranges: LpmTrie<MapData, SourceRange, u8>,
    addresses: HashMap<MapData, u32, u8>,
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DatapathError> {
    ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))
}

fn take<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, DatapathError> {
    HashMap::try_from(take_map(ebpf, name)?).map_err(|cause| DatapathError::Map { name, cause })
}

impl Tables {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            services: take(ebpf, map_names::SERVICES)?,
            slots: take(ebpf, map_names::BACKEND_SLOTS)?,
            backends: take(ebpf, map_names::BACKENDS)?,
            stats: {
                let name = map_names::FRONTEND_STATS;
                PerCpuHashMap::try_from(take_map(ebpf, name)?)
                    .map_err(|cause| DatapathError::Map { name, cause })?
            },
            maglev: take(ebpf, map_names::MAGLEV)?,
            source_ranges: {
                let name = map_names::SOURCE_RANGES;
                LpmTrie::try_from(take_map(ebpf, name)?)
                    .map_err(|cause| DatapathError::Map { name, cause })?
            },
            addresses: take(ebpf, map_names::FRONTEND_ADDRESSES)?,
        })
    }

    /// Everything the maps hold now.
    pub fn read(&self) -> Result<MapContents, DatapathError> {
        let mut contents = read_contents(&self.services, &self.slots, &self.backends)?;
        contents.maglev_ids = self
            .maglev
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|cause| DatapathError::Map {
                name: map_names::MAGLEV,
                cause,
            })?;
        contents.source_ranges = self
            .source_ranges
            .keys()
            .map(|key| key.map(|key| (key.data(), key.prefix_len())))
            .collect::<Result<_, _>>()
            .map_err(|cause| DatapathError::Map {
                name: map_names::SOURCE_RANGES,
                cause,
            })?;
        contents.addresses = self
            .addresses
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|cause| DatapathError::Map {
                name: map_names::FRONTEND_ADDRESSES,
                cause,
            })?;
        Ok(contents)
    }

    /// Whether the maps already hold what `op` would write (a Maglev table
    /// rebuilt after a restart is usually the one in the map).
    pub fn holds(&self, op: &MapOp) -> bool {
        match op {
            MapOp::PutMaglev(id, table) => self
                .maglev
                .get(id, 0)
                .is_ok_and(|current| current == *table.0),
            _ => false,
        }
    }

    /// Makes `ops` in order; each run of writes to one map of addresses,
    /// backends, slots or frontend entries takes one syscall per `BATCH` entries.
    pub fn write(&mut self, ops: &[MapOp]) -> Result<(), WriteError> {
        let mut rest = ops;
        while let Some(first) = rest.first() {
            let kind = std::mem::discriminant(first);
            let run = rest
                .iter()
                .take(BATCH)
                .take_while(|op| std::mem::discriminant(*op) == kind)
                .count();
            let (chunk, tail) = rest.split_at(run);
            rest = tail;
            if chunk.len() > 1 {
                match self.put_batch(chunk) {
                    Some(Ok(())) => continue,
                    // The kernel may lack the command, or one entry may not
                    // fit: one by one, the error names the write.
                    Some(Err(error)) => {
                        warn!(%error, entries = chunk.len(), "a batched map write failed; writing its entries one by one")
                    }
                    None => {}
                }
            }
            for op in chunk {
                self.apply(op).map_err(|cause| WriteError {
                    op: op.clone(),
                    cause,
                })?;
            }
        }
        Ok(())
    }

    /// Writes `ops`, all of one kind, in one syscall; `None` for a kind
    /// written one by one.
    fn put_batch(&mut self, ops: &[MapOp]) -> Option<Result<(), MapError>> {
        Some(match ops.first()? {
            MapOp::PutAddress(..) => update_batch(&self.addresses, ops, |op| match op {
                MapOp::PutAddress(address) => Some((*address, 1)),
                _ => None,
            }),
            MapOp::PutBackend(..) => update_batch(&self.backends, ops, |op| match op {
                MapOp::PutBackend(id, backend) => Some((*id, *backend)),
                _ => None,
            }),
            MapOp::PutSlot(..) => update_batch(&self.slots, ops, |op| match op {
                MapOp::PutSlot(key, id) => Some((*key, *id)),
                _ => None,
            }),
            MapOp::PutService(..) => update_batch(&self.services, ops, |op| match op {
                MapOp::PutService(key, value) => Some((*key, *value)),
                _ => None,
            }),
            _ => return None,
        })
    }

    pub fn apply(&mut self, op: &MapOp) -> Result<(), MapError> {
        match op {
            MapOp::PutAddress(address) => self.addresses.insert(address, 1, 0),
            MapOp::PutBackend(id, backend) => self.backends.insert(id, backend, 0),
            MapOp::PutSlot(key, id) => self.slots.insert(key, id, 0),
            MapOp::PutService(key, value) => self.services.insert(key, value, 0),
            MapOp::PutSourceRange(range, prefix_len) => {
                self.source_ranges
                    .insert(&Key::new(*prefix_len, *range), 1, 0)
            }
            MapOp::PutMaglev(id, table) => self.maglev.insert(id, table.0.as_ref(), 0),
            MapOp::DeleteService(key) => self.services.remove(key),
            MapOp::DeleteSourceRange(range, prefix_len) => {
                self.source_ranges.remove(&Key::new(*prefix_len, *range))
            }
            MapOp::DeleteMaglev(id) => self.maglev.remove(id),
            MapOp::DeleteSlot(key) => self.slots.remove(key),
            MapOp::DeleteBackend(id) => self.backends.remove(id),
            MapOp::DeleteAddress(address) => self.addresses.remove(address),
            // A frontend that never saw traffic has no counters to remove.
            MapOp::DeleteStats(id) => match self.stats.remove(id) {
                Err(MapError::SyscallError(error))
                    if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
                {
                    Ok(())
                }
                result => result,
            },
        }
    }
}

/// Writes the key and value `pick` finds in each of `ops` to `map`, in one
/// syscall.
fn update_batch<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    ops: &[MapOp],
    pick: impl Fn(&MapOp) -> Option<(K, V)>,
) -> Result<(), MapError> {
    let (keys, values): (Vec<K>, Vec<V>) = ops.iter().filter_map(pick).unzip();
    batch_ops::update(map.map().fd().as_fd(), &keys, &values)
}

/// Everything the three service maps hold now.
pub fn read_contents(
    services: &HashMap<MapData, ServiceKey, ServiceValue>,
    slots: &HashMap<MapData, BackendSlotKey, BackendId>,
    backends: &HashMap<MapData, BackendId, Backend>,
) -> Result<MapContents, DatapathError> {
    let read_error = |name| move |cause| DatapathError::Map { name, cause };
    Ok(MapContents {
        services: services
            .iter()
            .collect::<Result<_, _>>()
            .map_err(read_error(map_names::SERVICES))?,
        slots: slots
            .iter()
            .collect::<Result<_, _>>()
            .map_err(read_error(map_names::BACKEND_SLOTS))?,
        backends: backends
            .iter()
            .collect::<Result<_, _>>()
            .map_err(read_error(map_names::BACKENDS))?,
        ..MapContents::default()
    })
}
