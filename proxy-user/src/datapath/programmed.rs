//! What the datapath maps hold, and the map writes that move them to a new
//! state without the programs ever reading a dangling id.
//!
//! Order of every change (make-before-break):
//! 1. new backends are written,
//! 2. slots are written (a changed slot is overwritten in place),
//! 3. the frontend entry is written last when it is new or its count changes,
//! 4. then slots past the new count, and backends no slot uses, are removed.
//!
//! A frontend is removed in the reverse order: its entry first, then its slots,
//! then the backends nothing else uses. Between any two writes, everything a
//! program can reach from a frontend entry exists.
use std::collections::{HashMap, HashSet};

use proxy_common::{
    Backend, BackendId, BackendSlotKey, SERVICE_FLAG_AFFINITY, ServiceKey, ServiceValue,
};

use super::ids::IdAllocator;

/// One write to one map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapOp {
    PutBackend(BackendId, Backend),
    PutSlot(BackendSlotKey, BackendId),
    PutService(ServiceKey, ServiceValue),
    DeleteService(ServiceKey),
    DeleteSlot(BackendSlotKey),
    DeleteBackend(BackendId),
    /// The counters of a removed frontend (absent if it never saw traffic).
    DeleteStats(u32),
}

/// Everything the three service maps hold, as read back from the kernel.
#[derive(Debug, Default)]
pub struct MapContents {
    pub services: Vec<(ServiceKey, ServiceValue)>,
    pub slots: Vec<(BackendSlotKey, BackendId)>,
    pub backends: Vec<(BackendId, Backend)>,
}

#[derive(Debug)]
struct Frontend {
    id: u32,
    /// Backend ids by slot: slot `i` holds `slots[i]`.
    slots: Vec<BackendId>,
    /// sessionAffinity ClientIP timeout in seconds, if any.
    affinity_timeout: Option<u32>,
}

fn service_value(id: u32, backend_count: usize, affinity_timeout: Option<u32>) -> ServiceValue {
    ServiceValue {
        id,
        backend_count: backend_count as u32,
        flags: if affinity_timeout.is_some() {
            SERVICE_FLAG_AFFINITY
        } else {
            0
        },
        affinity_timeout: affinity_timeout.unwrap_or(0),
    }
}

#[derive(Debug)]
struct BackendEntry {
    id: BackendId,
    /// How many slots, over all frontends, hold this backend.
    users: usize,
}

/// The userspace mirror of the service maps.
#[derive(Debug, Default)]
pub struct Programmed {
    frontends: HashMap<ServiceKey, Frontend>,
    backends: HashMap<Backend, BackendEntry>,
    backend_by_id: HashMap<BackendId, Backend>,
    frontend_ids: IdAllocator,
    backend_ids: IdAllocator,
}

impl Programmed {
    /// Adopts what pinned maps already hold (after an agent restart), so that
    /// unchanged frontends cost no write at all. Returns the writes that drop
    /// what an interrupted earlier run left half done: a frontend whose slots
    /// are incomplete is cut to its complete prefix, and slots and backends
    /// no frontend reaches are removed.
    pub fn adopt(contents: MapContents) -> (Self, Vec<MapOp>) {
        let mut programmed = Self::default();
        let mut ops = Vec::new();
        let backend_by_id: HashMap<BackendId, Backend> =
            contents.backends.iter().copied().collect();
        let slots: HashMap<BackendSlotKey, BackendId> = contents.slots.iter().copied().collect();

        for (key, value) in contents.services {
            let complete: Vec<BackendId> = (0..value.backend_count)
                .map_while(|slot| {
                    slots
                        .get(&BackendSlotKey {
                            service_id: value.id,
                            slot,
                        })
                        .copied()
                        .filter(|id| backend_by_id.contains_key(id))
                })
                .collect();
            if complete.len() != value.backend_count as usize {
                ops.push(MapOp::PutService(
                    key,
                    ServiceValue {
                        backend_count: complete.len() as u32,
                        ..value
                    },
                ));
            }
            for id in &complete {
                let backend = backend_by_id[id];
                programmed.backend_ids.adopt(*id);
                programmed.backend_by_id.insert(*id, backend);
                programmed
                    .backends
                    .entry(backend)
                    .or_insert(BackendEntry { id: *id, users: 0 })
                    .users += 1;
            }
            programmed.frontend_ids.adopt(value.id);
            programmed.frontends.insert(
                key,
                Frontend {
                    id: value.id,
                    slots: complete,
                    affinity_timeout: (value.flags & SERVICE_FLAG_AFFINITY != 0)
                        .then_some(value.affinity_timeout),
                },
            );
        }

        let reachable: HashSet<BackendSlotKey> = programmed
            .frontends
            .values()
            .flat_map(|frontend| {
                (0..frontend.slots.len() as u32).map(|slot| BackendSlotKey {
                    service_id: frontend.id,
                    slot,
                })
            })
            .collect();
        let mut stale_slots: Vec<BackendSlotKey> = slots
            .keys()
            .filter(|key| !reachable.contains(key))
            .copied()
            .collect();
        stale_slots.sort();
        ops.extend(stale_slots.into_iter().map(MapOp::DeleteSlot));

        let mut stale_backends: Vec<BackendId> = backend_by_id
            .keys()
            .filter(|id| !programmed.backend_by_id.contains_key(id))
            .copied()
            .collect();
        stale_backends.sort();
        ops.extend(stale_backends.into_iter().map(MapOp::DeleteBackend));
        (programmed, ops)
    }

    pub fn keys(&self) -> impl Iterator<Item = &ServiceKey> {
        self.frontends.keys()
    }

    /// The backends a frontend currently balances to, by slot.
    pub fn backends(&self, key: &ServiceKey) -> Option<Vec<Backend>> {
        self.frontends.get(key).map(|frontend| {
            frontend
                .slots
                .iter()
                .map(|id| self.backend_by_id[id])
                .collect()
        })
    }

    /// Plans the writes that make `key` balance to exactly `backends`
    /// (an empty list keeps the frontend, which then refuses connections),
    /// with client affinity for `affinity_timeout` seconds if given. The
    /// model is updated as if the writes succeeded.
    pub fn set(
        &mut self,
        key: ServiceKey,
        backends: &[Backend],
        affinity_timeout: Option<u32>,
    ) -> Vec<MapOp> {
        let mut ops = Vec::new();
        let mut unique = backends.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let wanted: Vec<BackendId> = unique
            .into_iter()
            .map(|backend| self.acquire(backend, &mut ops))
            .collect();

        let (id, old_slots, old_affinity) = match self.frontends.get(&key) {
            Some(frontend) => (
                frontend.id,
                frontend.slots.clone(),
                frontend.affinity_timeout,
            ),
            None => (self.frontend_ids.allocate(), Vec::new(), None),
        };
        let is_new = !self.frontends.contains_key(&key);
        let slots = next_layout(&old_slots, &wanted);

        for (slot, backend) in slots.iter().enumerate() {
            if old_slots.get(slot) != Some(backend) {
                ops.push(MapOp::PutSlot(slot_key(id, slot), *backend));
            }
        }
        if is_new || slots.len() != old_slots.len() || affinity_timeout != old_affinity {
            ops.push(MapOp::PutService(
                key,
                service_value(id, slots.len(), affinity_timeout),
            ));
        }
        for slot in slots.len()..old_slots.len() {
            ops.push(MapOp::DeleteSlot(slot_key(id, slot)));
        }
        for backend in old_slots {
            self.release(backend, &mut ops);
        }
        self.frontends.insert(
            key,
            Frontend {
                id,
                slots,
                affinity_timeout,
            },
        );
        ops
    }

    /// Plans the writes that remove a frontend and everything only it used.
    pub fn remove(&mut self, key: &ServiceKey) -> Vec<MapOp> {
        let Some(frontend) = self.frontends.remove(key) else {
            return Vec::new();
        };
        let mut ops = vec![MapOp::DeleteService(*key)];
        ops.extend(
            (0..frontend.slots.len()).map(|slot| MapOp::DeleteSlot(slot_key(frontend.id, slot))),
        );
        for backend in frontend.slots {
            self.release(backend, &mut ops);
        }
        ops.push(MapOp::DeleteStats(frontend.id));
        self.frontend_ids.release(frontend.id);
        ops
    }

    fn acquire(&mut self, backend: Backend, ops: &mut Vec<MapOp>) -> BackendId {
        if let Some(entry) = self.backends.get_mut(&backend) {
            entry.users += 1;
            return entry.id;
        }
        let id = self.backend_ids.allocate();
        self.backends.insert(backend, BackendEntry { id, users: 1 });
        self.backend_by_id.insert(id, backend);
        ops.push(MapOp::PutBackend(id, backend));
        id
    }

    fn release(&mut self, id: BackendId, ops: &mut Vec<MapOp>) {
        let backend = self.backend_by_id[&id];
        let entry = self
            .backends
            .get_mut(&backend)
            .expect("every backend id in a slot has an entry");
        entry.users -= 1;
        if entry.users == 0 {
            self.backends.remove(&backend);
            self.backend_by_id.remove(&id);
            self.backend_ids.release(id);
            ops.push(MapOp::DeleteBackend(id));
        }
    }
}

fn slot_key(service_id: u32, slot: usize) -> BackendSlotKey {
    BackendSlotKey {
        service_id,
        slot: slot as u32,
    }
}

/// The new slot layout: backends that stay keep their slot where possible (a
/// removed backend's slot is taken by the last one), new backends are
/// appended. This keeps the number of slot writes per change small.
fn next_layout(old: &[BackendId], wanted: &[BackendId]) -> Vec<BackendId> {
    let wanted_set: HashSet<BackendId> = wanted.iter().copied().collect();
    let mut layout = old.to_vec();
    let mut slot = 0;
    while slot < layout.len() {
        if wanted_set.contains(&layout[slot]) {
            slot += 1;
        } else {
            layout.swap_remove(slot);
        }
    }
    let kept: HashSet<BackendId> = layout.iter().copied().collect();
    layout.extend(wanted.iter().filter(|id| !kept.contains(id)));
    layout
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_common::PROTO_TCP;

    fn frontend(last_octet: u8) -> ServiceKey {
        ServiceKey {
            address: u32::from_ne_bytes([10, 96, 0, last_octet]),
            port: 80u16.to_be(),
            protocol: PROTO_TCP,
            pad: 0,
        }
    }

    fn backend(last_octet: u8) -> Backend {
        Backend {
            address: u32::from_ne_bytes([10, 244, 1, last_octet]),
            port: 8080u16.to_be(),
            protocol: PROTO_TCP,
            pad: 0,
        }
    }

    /// Applies ops to an in-memory copy of the maps, checking after every
    /// single write that no frontend reaches a missing slot or backend.
    #[derive(Default)]
    struct Maps {
        services: HashMap<ServiceKey, ServiceValue>,
        slots: HashMap<BackendSlotKey, BackendId>,
        backends: HashMap<BackendId, Backend>,
    }

    impl Maps {
        fn apply(&mut self, ops: &[MapOp]) {
            for op in ops {
                match *op {
                    MapOp::PutBackend(id, backend) => {
                        self.backends.insert(id, backend);
                    }
                    MapOp::PutSlot(key, id) => {
                        self.slots.insert(key, id);
                    }
                    MapOp::PutService(key, value) => {
                        self.services.insert(key, value);
                    }
                    MapOp::DeleteService(key) => {
                        self.services.remove(&key).expect("deleted service existed");
                    }
                    MapOp::DeleteSlot(key) => {
                        self.slots.remove(&key).expect("deleted slot existed");
                    }
                    MapOp::DeleteBackend(id) => {
                        self.backends.remove(&id).expect("deleted backend existed");
                    }
                    MapOp::DeleteStats(_) => {}
                }
                self.assert_no_dangling(op);
            }
        }

        fn assert_no_dangling(&self, after: &MapOp) {
            for value in self.services.values() {
                for slot in 0..value.backend_count {
                    let id = self.slots.get(&BackendSlotKey {
                        service_id: value.id,
                        slot,
                    });
                    let id = id.unwrap_or_else(|| panic!("dangling slot {slot} after {after:?}"));
                    assert!(
                        self.backends.contains_key(id),
                        "dangling backend {id} after {after:?}"
                    );
                }
            }
        }

        fn reachable(&self, key: &ServiceKey) -> Vec<Backend> {
            let value = self.services[key];
            let mut backends: Vec<Backend> = (0..value.backend_count)
                .map(|slot| {
                    self.backends[&self.slots[&BackendSlotKey {
                        service_id: value.id,
                        slot,
                    }]]
                })
                .collect();
            backends.sort();
            backends
        }

        fn contents(&self) -> MapContents {
            MapContents {
                services: self.services.iter().map(|(k, v)| (*k, *v)).collect(),
                slots: self.slots.iter().map(|(k, v)| (*k, *v)).collect(),
                backends: self.backends.iter().map(|(k, v)| (*k, *v)).collect(),
            }
        }
    }

    #[test]
    fn a_new_frontend_is_written_after_its_slots_and_backends() {
        let mut programmed = Programmed::default();
        let ops = programmed.set(frontend(10), &[backend(2), backend(3)], None);
        assert!(matches!(ops.last(), Some(MapOp::PutService(_, v)) if v.backend_count == 2));
        let mut maps = Maps::default();
        maps.apply(&ops);
        assert_eq!(maps.reachable(&frontend(10)), vec![backend(2), backend(3)]);
    }

    #[test]
    fn an_unchanged_frontend_costs_no_write() {
        let mut programmed = Programmed::default();
        programmed.set(frontend(10), &[backend(2), backend(3)], None);
        assert_eq!(
            programmed.set(frontend(10), &[backend(3), backend(2)], None),
            vec![]
        );
    }

    #[test]
    fn removing_a_backend_moves_the_last_into_its_slot_then_shrinks() {
        let mut programmed = Programmed::default();
        let mut maps = Maps::default();
        maps.apply(&programmed.set(frontend(10), &[backend(2), backend(3), backend(4)], None));
        let ops = programmed.set(frontend(10), &[backend(3), backend(4)], None);
        // One slot rewrite, the count, one slot delete, one backend delete.
        assert_eq!(ops.len(), 4, "{ops:?}");
        assert!(matches!(ops[0], MapOp::PutSlot(_, _)));
        assert!(matches!(ops[1], MapOp::PutService(_, v) if v.backend_count == 2));
        assert!(matches!(ops[2], MapOp::DeleteSlot(_)));
        assert!(matches!(ops[3], MapOp::DeleteBackend(_)));
        maps.apply(&ops);
        assert_eq!(maps.reachable(&frontend(10)), vec![backend(3), backend(4)]);
    }

    #[test]
    fn changing_only_the_affinity_rewrites_only_the_frontend_entry() {
        let mut programmed = Programmed::default();
        let mut maps = Maps::default();
        maps.apply(&programmed.set(frontend(10), &[backend(2)], None));
        let ops = programmed.set(frontend(10), &[backend(2)], Some(30));
        assert!(
            matches!(ops.as_slice(), [MapOp::PutService(_, v)] if v.flags == SERVICE_FLAG_AFFINITY && v.affinity_timeout == 30),
            "{ops:?}"
        );
        maps.apply(&ops);
        let (mut adopted, repairs) = Programmed::adopt(maps.contents());
        assert_eq!(repairs, vec![]);
        assert_eq!(adopted.set(frontend(10), &[backend(2)], Some(30)), vec![]);
        assert_eq!(adopted.set(frontend(10), &[backend(2)], None).len(), 1);
    }

    #[test]
    fn a_frontend_without_endpoints_stays_with_count_zero() {
        let mut programmed = Programmed::default();
        let mut maps = Maps::default();
        maps.apply(&programmed.set(frontend(10), &[backend(2)], None));
        maps.apply(&programmed.set(frontend(10), &[], None));
        assert_eq!(maps.services[&frontend(10)].backend_count, 0);
        assert!(maps.slots.is_empty() && maps.backends.is_empty());
    }

    #[test]
    fn shared_backends_live_until_their_last_frontend_goes() {
        let mut programmed = Programmed::default();
        let mut maps = Maps::default();
        maps.apply(&programmed.set(frontend(10), &[backend(2)], None));
        maps.apply(&programmed.set(frontend(11), &[backend(2), backend(3)], None));
        assert_eq!(maps.backends.len(), 2);
        maps.apply(&programmed.remove(&frontend(10)));
        assert_eq!(maps.reachable(&frontend(11)), vec![backend(2), backend(3)]);
        maps.apply(&programmed.remove(&frontend(11)));
        assert!(maps.services.is_empty() && maps.slots.is_empty() && maps.backends.is_empty());
    }

    #[test]
    fn duplicate_backends_count_once() {
        let mut programmed = Programmed::default();
        let mut maps = Maps::default();
        maps.apply(&programmed.set(frontend(10), &[backend(2), backend(2)], None));
        assert_eq!(maps.reachable(&frontend(10)), vec![backend(2)]);
        maps.apply(&programmed.remove(&frontend(10)));
        assert!(maps.backends.is_empty());
    }

    #[test]
    fn adopting_pinned_maps_needs_no_write_for_what_is_unchanged() {
        let mut before = Programmed::default();
        let mut maps = Maps::default();
        maps.apply(&before.set(frontend(10), &[backend(2), backend(3)], None));
        maps.apply(&before.set(frontend(11), &[backend(3)], None));

        let (mut after, repairs) = Programmed::adopt(maps.contents());
        assert_eq!(repairs, vec![]);
        assert_eq!(
            after.set(frontend(10), &[backend(2), backend(3)], None),
            vec![]
        );
        assert_eq!(after.set(frontend(11), &[backend(3)], None), vec![]);
        // Ids continue past the adopted ones instead of colliding.
        maps.apply(&after.set(frontend(12), &[backend(4)], None));
        assert_eq!(maps.reachable(&frontend(12)), vec![backend(4)]);
        assert_eq!(maps.reachable(&frontend(10)), vec![backend(2), backend(3)]);
    }

    #[test]
    fn adopting_repairs_what_an_interrupted_run_left() {
        let mut maps = Maps::default();
        let mut before = Programmed::default();
        maps.apply(&before.set(frontend(10), &[backend(2), backend(3)], None));
        // An agent died after writing a new backend and slot but before the
        // count, and an orphan slot of a deleted frontend remains.
        maps.backends.insert(90, backend(9));
        maps.slots.insert(
            BackendSlotKey {
                service_id: 1,
                slot: 2,
            },
            90,
        );
        maps.slots.insert(
            BackendSlotKey {
                service_id: 77,
                slot: 0,
            },
            90,
        );
        // And one frontend claims more slots than exist.
        maps.services.insert(
            frontend(11),
            ServiceValue {
                id: 5,
                backend_count: 3,
                flags: 0,
                affinity_timeout: 0,
            },
        );
        maps.slots.insert(
            BackendSlotKey {
                service_id: 5,
                slot: 0,
            },
            90,
        );

        let (_, repairs) = Programmed::adopt(maps.contents());
        assert!(repairs.contains(&MapOp::PutService(
            frontend(11),
            ServiceValue {
                id: 5,
                backend_count: 1,
                flags: 0,
                affinity_timeout: 0
            }
        )));
        assert!(repairs.contains(&MapOp::DeleteSlot(BackendSlotKey {
            service_id: 1,
            slot: 2
        })));
        assert!(repairs.contains(&MapOp::DeleteSlot(BackendSlotKey {
            service_id: 77,
            slot: 0
        })));
        maps.apply(&repairs);
        assert_eq!(maps.reachable(&frontend(11)), vec![backend(9)]);
        assert_eq!(maps.reachable(&frontend(10)), vec![backend(2), backend(3)]);
    }
}
