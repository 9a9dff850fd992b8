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
    Backend, Backend6, BackendId, BackendSlotKey, FrontendStats, Ipv6Words, MaglevTable,
    ServiceKey, ServiceKey6, ServiceValue, SourceRange, SourceRange6, map_names,
};

use tracing::warn;

use super::{
    error::{DatapathError, WriteError},
    keys::{BackendKey, FrontendAddress, FrontendKey, SourceRangeKey},
    programmed::{MapContents, MapOp},
};
use crate::sys::batch_ops;

/// Entries per batched write: few syscalls, and key and value arrays
/// of a few hundred KiB at most.
const BATCH: usize = 16_384;

pub struct Tables {
    services: ServiceMaps,
    slots: HashMap<MapData, BackendSlotKey, BackendId>,
    stats: PerCpuHashMap<MapData, u32, FrontendStats>,
    maglev: HashMap<MapData, u32, MaglevTable>,
    source_ranges: LpmTrie<MapData, SourceRange, u8>,
    source_ranges6: LpmTrie<MapData, SourceRange6, u8>,
    addresses: HashMap<MapData, u32, u8>,
    addresses6: HashMap<MapData, Ipv6Words, u8>,
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DatapathError> {
    ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))
}

fn take_trie<K: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<LpmTrie<MapData, K, u8>, DatapathError> {
    LpmTrie::try_from(take_map(ebpf, name)?).map_err(|cause| DatapathError::Map { name, cause })
}

fn take<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, DatapathError> {
    HashMap::try_from(take_map(ebpf, name)?).map_err(|cause| DatapathError::Map { name, cause })
}

/// The maps of each family's frontends and backends.
struct ServiceMaps {
    pub services: HashMap<MapData, ServiceKey, ServiceValue>,
    pub backends: HashMap<MapData, BackendId, Backend>,
    pub services6: HashMap<MapData, ServiceKey6, ServiceValue>,
    pub backends6: HashMap<MapData, BackendId, Backend6>,
}

impl ServiceMaps {
    fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            services: take(ebpf, map_names::SERVICES)?,
            backends: take(ebpf, map_names::BACKENDS)?,
            services6: take(ebpf, map_names::SERVICES6)?,
            backends6: take(ebpf, map_names::BACKENDS6)?,
        })
    }

    fn put_service(&mut self, key: &FrontendKey, value: &ServiceValue) -> Result<(), MapError> {
        match key {
            FrontendKey::V4(key) => self.services.insert(key, value, 0),
            FrontendKey::V6(key) => self.services6.insert(key, value, 0),
        }
    }

    fn delete_service(&mut self, key: &FrontendKey) -> Result<(), MapError> {
        match key {
            FrontendKey::V4(key) => self.services.remove(key),
            FrontendKey::V6(key) => self.services6.remove(key),
        }
    }

    fn put_backend(&mut self, id: &BackendId, backend: &BackendKey) -> Result<(), MapError> {
        match backend {
            BackendKey::V4(backend) => self.backends.insert(id, backend, 0),
            BackendKey::V6(backend) => self.backends6.insert(id, backend, 0),
        }
    }

    /// A backend id is in one family's map only: removed from whichever
    /// holds it.
    fn delete_backend(&mut self, id: &BackendId) -> Result<(), MapError> {
        match self.backends.remove(id) {
            Err(MapError::SyscallError(error))
                if error.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                self.backends6.remove(id)
            }
            result => result,
        }
    }
}

impl Tables {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            services: ServiceMaps::take(ebpf)?,
            slots: take(ebpf, map_names::BACKEND_SLOTS)?,
            stats: {
                let name = map_names::FRONTEND_STATS;
                PerCpuHashMap::try_from(take_map(ebpf, name)?)
                    .map_err(|cause| DatapathError::Map { name, cause })?
            },
            maglev: take(ebpf, map_names::MAGLEV)?,
            source_ranges: take_trie(ebpf, map_names::SOURCE_RANGES)?,
            source_ranges6: take_trie(ebpf, map_names::SOURCE_RANGES6)?,
            addresses: take(ebpf, map_names::FRONTEND_ADDRESSES)?,
            addresses6: take(ebpf, map_names::FRONTEND_ADDRESSES6)?,
        })
    }

    /// Everything the maps hold now.
    pub fn read(&self) -> Result<MapContents, DatapathError> {
        let maps = &self.services;
        let ipv6 = Ipv6Maps {
            services6: &maps.services6,
            backends6: &maps.backends6,
        };
        let mut contents = read_contents(&maps.services, &maps.backends, Some(ipv6), &self.slots)?;
        contents.maglev_ids = self
            .maglev
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|cause| DatapathError::Map {
                name: map_names::MAGLEV,
                cause,
            })?;
        read_trie(
            &self.source_ranges,
            map_names::SOURCE_RANGES,
            SourceRangeKey::V4,
            &mut contents.source_ranges,
        )?;
        read_trie(
            &self.source_ranges6,
            map_names::SOURCE_RANGES6,
            SourceRangeKey::V6,
            &mut contents.source_ranges,
        )?;
        let addresses = self
            .addresses
            .keys()
            .map(|key| key.map(FrontendAddress::V4));
        contents.addresses =
            addresses
                .collect::<Result<_, _>>()
                .map_err(|cause| DatapathError::Map {
                    name: map_names::FRONTEND_ADDRESSES,
                    cause,
                })?;
        for address in self.addresses6.keys() {
            let address = address.map_err(|cause| DatapathError::Map {
                name: map_names::FRONTEND_ADDRESSES6,
                cause,
            })?;
            contents.addresses.push(FrontendAddress::V6(address));
        }
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
            let target = first.target();
            let run = rest
                .iter()
                .take(BATCH)
                .take_while(|op| op.target() == target)
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
            MapOp::PutAddress(FrontendAddress::V4(_)) => {
                update_batch(&self.addresses, ops, |op| match op {
                    MapOp::PutAddress(FrontendAddress::V4(address)) => Some((*address, 1)),
                    _ => None,
                })
            }
            MapOp::PutAddress(FrontendAddress::V6(_)) => {
                update_batch(&self.addresses6, ops, |op| match op {
                    MapOp::PutAddress(FrontendAddress::V6(address)) => Some((*address, 1)),
                    _ => None,
                })
            }
            MapOp::PutBackend(_, BackendKey::V4(_)) => {
                update_batch(&self.services.backends, ops, |op| match op {
                    MapOp::PutBackend(id, BackendKey::V4(backend)) => Some((*id, *backend)),
                    _ => None,
                })
            }
            MapOp::PutBackend(_, BackendKey::V6(_)) => {
                update_batch(&self.services.backends6, ops, |op| match op {
                    MapOp::PutBackend(id, BackendKey::V6(backend)) => Some((*id, *backend)),
                    _ => None,
                })
            }
            MapOp::PutSlot(..) => update_batch(&self.slots, ops, |op| match op {
                MapOp::PutSlot(key, id) => Some((*key, *id)),
                _ => None,
            }),
            MapOp::PutService(FrontendKey::V4(_), _) => {
                update_batch(&self.services.services, ops, |op| match op {
                    MapOp::PutService(FrontendKey::V4(key), value) => Some((*key, *value)),
                    _ => None,
                })
            }
            MapOp::PutService(FrontendKey::V6(_), _) => {
                update_batch(&self.services.services6, ops, |op| match op {
                    MapOp::PutService(FrontendKey::V6(key), value) => Some((*key, *value)),
                    _ => None,
                })
            }
            _ => return None,
        })
    }

    pub fn apply(&mut self, op: &MapOp) -> Result<(), MapError> {
        match op {
            MapOp::PutAddress(FrontendAddress::V4(address)) => self.addresses.insert(address, 1, 0),
            MapOp::PutAddress(FrontendAddress::V6(address)) => {
                self.addresses6.insert(address, 1, 0)
            }
            MapOp::PutBackend(id, backend) => self.services.put_backend(id, backend),
            MapOp::PutSlot(key, id) => self.slots.insert(key, id, 0),
            MapOp::PutService(key, value) => self.services.put_service(key, value),
            MapOp::PutSourceRange(SourceRangeKey::V4(range, prefix_len)) => self
                .source_ranges
                .insert(&Key::new(*prefix_len, *range), 1, 0),
            MapOp::PutSourceRange(SourceRangeKey::V6(range, prefix_len)) => self
                .source_ranges6
                .insert(&Key::new(*prefix_len, *range), 1, 0),
            MapOp::PutMaglev(id, table) => self.maglev.insert(id, table.0.as_ref(), 0),
            MapOp::DeleteService(key) => self.services.delete_service(key),
            MapOp::DeleteSourceRange(SourceRangeKey::V4(range, prefix_len)) => {
                self.source_ranges.remove(&Key::new(*prefix_len, *range))
            }
            MapOp::DeleteSourceRange(SourceRangeKey::V6(range, prefix_len)) => {
                self.source_ranges6.remove(&Key::new(*prefix_len, *range))
            }
            MapOp::DeleteMaglev(id) => self.maglev.remove(id),
            MapOp::DeleteSlot(key) => self.slots.remove(key),
            MapOp::DeleteBackend(id) => self.services.delete_backend(id),
            MapOp::DeleteAddress(FrontendAddress::V4(address)) => self.addresses.remove(address),
            MapOp::DeleteAddress(FrontendAddress::V6(address)) => self.addresses6.remove(address),
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

/// Adds the entries of one family's source ranges trie to `entries`.
fn read_trie<K: aya::Pod>(
    trie: &LpmTrie<MapData, K, u8>,
    name: &'static str,
    entry: fn(K, u32) -> SourceRangeKey,
    entries: &mut Vec<SourceRangeKey>,
) -> Result<(), DatapathError> {
    for key in trie.keys() {
        let key = key.map_err(|cause| DatapathError::Map { name, cause })?;
        entries.push(entry(key.data(), key.prefix_len()));
    }
    Ok(())
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

/// The IPv6 frontend and backend maps; an agent older than IPv6 pinned
/// neither.
pub struct Ipv6Maps<'a> {
    pub services6: &'a HashMap<MapData, ServiceKey6, ServiceValue>,
    pub backends6: &'a HashMap<MapData, BackendId, Backend6>,
}

/// Everything the frontend, slot and backend maps hold now: IPv4's, and
/// IPv6's when there are such maps.
pub fn read_contents(
    services: &HashMap<MapData, ServiceKey, ServiceValue>,
    backends: &HashMap<MapData, BackendId, Backend>,
    ipv6: Option<Ipv6Maps<'_>>,
    slots: &HashMap<MapData, BackendSlotKey, BackendId>,
) -> Result<MapContents, DatapathError> {
    let read_error = |name| move |cause| DatapathError::Map { name, cause };
    let mut services: Vec<(FrontendKey, ServiceValue)> = services
        .iter()
        .map(|entry| entry.map(|(key, value)| (FrontendKey::V4(key), value)))
        .collect::<Result<_, _>>()
        .map_err(read_error(map_names::SERVICES))?;
    let mut backends: Vec<(BackendId, BackendKey)> = backends
        .iter()
        .map(|entry| entry.map(|(id, backend)| (id, BackendKey::V4(backend))))
        .collect::<Result<_, _>>()
        .map_err(read_error(map_names::BACKENDS))?;
    if let Some(Ipv6Maps {
        services6,
        backends6,
    }) = ipv6
    {
        for entry in services6.iter() {
            let (key, value) = entry.map_err(read_error(map_names::SERVICES6))?;
            services.push((FrontendKey::V6(key), value));
        }
        for entry in backends6.iter() {
            let (id, backend) = entry.map_err(read_error(map_names::BACKENDS6))?;
            backends.push((id, BackendKey::V6(backend)));
        }
    }
    Ok(MapContents {
        services,
        slots: slots
            .iter()
            .collect::<Result<_, _>>()
            .map_err(read_error(map_names::BACKEND_SLOTS))?,
        backends,
        ..MapContents::default()
    })
}
