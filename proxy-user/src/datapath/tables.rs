//! Typed handles on the service maps, and the one place map writes happen.
use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapError, PerCpuHashMap},
};
use proxy_common::{
    Backend, BackendId, BackendSlotKey, FrontendStats, ServiceKey, ServiceValue, map_names,
};

use super::{
    DatapathError,
    programmed::{MapContents, MapOp},
};

pub struct Tables {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    slots: HashMap<MapData, BackendSlotKey, BackendId>,
    backends: HashMap<MapData, BackendId, Backend>,
    stats: PerCpuHashMap<MapData, u32, FrontendStats>,
}

fn take<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, DatapathError> {
    let map = ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))?;
    HashMap::try_from(map).map_err(|cause| DatapathError::Map { name, cause })
}

impl Tables {
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, DatapathError> {
        Ok(Self {
            services: take(ebpf, map_names::SERVICES)?,
            slots: take(ebpf, map_names::BACKEND_SLOTS)?,
            backends: take(ebpf, map_names::BACKENDS)?,
            stats: {
                let name = map_names::FRONTEND_STATS;
                let map = ebpf.take_map(name).ok_or(DatapathError::MissingMap(name))?;
                PerCpuHashMap::try_from(map).map_err(|cause| DatapathError::Map { name, cause })?
            },
        })
    }

    /// Everything the maps hold now.
    pub fn read(&self) -> Result<MapContents, DatapathError> {
        read_contents(&self.services, &self.slots, &self.backends)
    }

    pub fn apply(&mut self, op: &MapOp) -> Result<(), MapError> {
        match op {
            MapOp::PutBackend(id, backend) => self.backends.insert(id, backend, 0),
            MapOp::PutSlot(key, id) => self.slots.insert(key, id, 0),
            MapOp::PutService(key, value) => self.services.insert(key, value, 0),
            MapOp::DeleteService(key) => self.services.remove(key),
            MapOp::DeleteSlot(key) => self.slots.remove(key),
            MapOp::DeleteBackend(id) => self.backends.remove(id),
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
    })
}
