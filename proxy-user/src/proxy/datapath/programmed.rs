//! What the datapath maps hold, and the map writes that move them to a new
//! state without the programs ever reading a dangling id.
//!
//! Order of every change (make-before-break):
//! 1. new backends are written,
//! 2. slots are written (a changed slot is overwritten in place),
//! 3. new source ranges and the Maglev table (which names slots) are
//!    written,
//! 4. the frontend entry is written last when it is new or its count or
//!    policy changes,
//! 5. then slots past the new count, source ranges and tables the frontend
//!    no longer has, and backends no slot uses, are removed.
//!
//! A frontend is removed in the reverse order: its entry first, then its
//! slots, ranges and table, then the backends nothing else uses. Between any
//! two writes, everything a program can reach from a frontend entry exists.
use std::{
    collections::{HashMap, HashSet},
    fmt,
};

use proxy_common::{
    Backend, BackendId, BackendSlotKey, MAGLEV_MAX_SIZE, MaglevTable, SERVICE_FLAG_EXTERNAL,
    SERVICE_FLAG_SOURCE_RANGES, ServiceKey, ServiceValue, SourceRange,
};

use super::{
    ids::IdAllocator,
    maglev::{self, MaglevSize},
};
use crate::proxy::policy::{Policy, SourceCidr};

/// One write to one map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapOp {
    PutBackend(BackendId, Backend),
    PutSlot(BackendSlotKey, BackendId),
    PutSourceRange(SourceRange, u32),
    PutMaglev(u32, MaglevEntries),
    PutService(ServiceKey, ServiceValue),
    DeleteService(ServiceKey),
    DeleteSlot(BackendSlotKey),
    DeleteSourceRange(SourceRange, u32),
    DeleteMaglev(u32),
    DeleteBackend(BackendId),
    /// The counters of a removed frontend (absent if it never saw traffic).
    DeleteStats(u32),
}

/// A frontend's Maglev table, as the map holds it.
#[derive(Clone, PartialEq, Eq)]
pub struct MaglevEntries(pub Box<MaglevTable>);

/// Logs name the table, not its 16 381 entries.
impl fmt::Debug for MaglevEntries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaglevTable")
    }
}

/// Everything the service maps hold, as read back from the kernel.
#[derive(Debug, Default)]
pub struct MapContents {
    pub services: Vec<(ServiceKey, ServiceValue)>,
    pub slots: Vec<(BackendSlotKey, BackendId)>,
    pub backends: Vec<(BackendId, Backend)>,
    /// Entries of the source ranges trie, with their prefix lengths.
    pub source_ranges: Vec<(SourceRange, u32)>,
    /// Frontend ids that have a Maglev table.
    pub maglev_ids: Vec<u32>,
}

#[derive(Debug)]
struct Frontend {
    id: u32,
    /// Backend ids by slot: slot `i` holds `slots[i]`.
    slots: Vec<BackendId>,
    policy: Policy,
}

#[derive(Debug)]
struct BackendEntry {
    id: BackendId,
    /// How many slots, over all frontends, hold this backend.
    users: usize,
}

/// The size and seed every Maglev table is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaglevParams {
    pub size: MaglevSize,
    pub seed: u32,
}

/// The writes of one `Programmed::plan`, and the change they make.
#[derive(Debug)]
pub struct Plan {
    pub ops: Vec<MapOp>,
    pub change: BackendChange,
}

/// How a frontend's backend set changes, for logs and for the sockets to
/// reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendChange {
    /// The frontend did not exist before.
    pub new_frontend: bool,
    pub added: Vec<Backend>,
    pub removed: Vec<Backend>,
    /// Backends after the change.
    pub count: usize,
}

/// The backends of `ids` that are not in `other`.
fn difference(
    ids: &[BackendId],
    other: &[BackendId],
    backend_by_id: &HashMap<BackendId, Backend>,
) -> Vec<Backend> {
    let other: HashSet<&BackendId> = other.iter().collect();
    ids.iter()
        .filter(|id| !other.contains(id))
        .map(|id| backend_by_id[id])
        .collect()
}

/// The userspace mirror of the service maps.
#[derive(Debug)]
pub struct Programmed {
    frontends: HashMap<ServiceKey, Frontend>,
    backends: HashMap<Backend, BackendEntry>,
    backend_by_id: HashMap<BackendId, Backend>,
    frontend_ids: IdAllocator,
    backend_ids: IdAllocator,
    maglev: MaglevParams,
}

impl Programmed {
    pub fn new(maglev: MaglevParams) -> Self {
        Self {
            frontends: HashMap::new(),
            backends: HashMap::new(),
            backend_by_id: HashMap::new(),
            frontend_ids: IdAllocator::default(),
            backend_ids: IdAllocator::default(),
            maglev,
        }
    }

    /// Adopts what pinned maps already hold (after an agent restart), so that
    /// unchanged frontends cost no write at all. Returns the writes that drop
    /// what an interrupted earlier run left half done: a frontend whose slots
    /// are incomplete is cut to its complete prefix, and slots, backends,
    /// source ranges and tables no frontend reaches are removed. Maglev
    /// tables are written afresh: the size or seed may have changed.
    pub fn adopt(contents: MapContents, maglev: MaglevParams) -> (Self, Vec<MapOp>) {
        let mut programmed = Self::new(maglev);
        let mut ops = Vec::new();
        let backend_by_id: HashMap<BackendId, Backend> =
            contents.backends.iter().copied().collect();
        let slots: HashMap<BackendSlotKey, BackendId> = contents.slots.iter().copied().collect();
        let mut ranges_by_id: HashMap<u32, Vec<SourceCidr>> = HashMap::new();
        for (range, prefix_len) in &contents.source_ranges {
            ranges_by_id
                .entry(range.service_id)
                .or_default()
                .push(SourceCidr::of_entry(range, *prefix_len));
        }
        let mut tables = Vec::new();
        let mut stale_ranges = Vec::new();

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
            let mut source_ranges = ranges_by_id.remove(&value.id).unwrap_or_default();
            source_ranges.sort_unstable();
            // Ranges of a frontend whose entry no longer asks for them.
            if value.flags & SERVICE_FLAG_SOURCE_RANGES == 0 {
                stale_ranges.extend(source_ranges.drain(..).map(|cidr| cidr.entry(value.id)));
            }
            let policy = Policy::of_value(&value, source_ranges);
            if value.flags & SERVICE_FLAG_EXTERNAL != 0 && !complete.is_empty() {
                tables.push(value.id);
            }
            programmed.frontend_ids.adopt(value.id);
            programmed.frontends.insert(
                key,
                Frontend {
                    id: value.id,
                    slots: complete,
                    policy,
                },
            );
        }
        for id in tables {
            let frontend = programmed
                .frontends
                .values()
                .find(|frontend| frontend.id == id)
                .expect("the table's frontend was just adopted");
            ops.push(programmed.maglev_op(frontend.id, &frontend.slots));
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

        // Ranges of frontends gone.
        stale_ranges.extend(
            ranges_by_id
                .into_iter()
                .flat_map(|(id, cidrs)| cidrs.into_iter().map(move |cidr| cidr.entry(id))),
        );
        stale_ranges.sort();
        ops.extend(
            stale_ranges
                .into_iter()
                .map(|(range, prefix_len)| MapOp::DeleteSourceRange(range, prefix_len)),
        );

        let with_tables: HashSet<u32> = programmed
            .frontends
            .values()
            .filter(|frontend| frontend.policy.external && !frontend.slots.is_empty())
            .map(|frontend| frontend.id)
            .collect();
        let mut stale_tables: Vec<u32> = contents
            .maglev_ids
            .into_iter()
            .filter(|id| !with_tables.contains(id))
            .collect();
        stale_tables.sort();
        ops.extend(stale_tables.into_iter().map(MapOp::DeleteMaglev));

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
    /// (an empty list keeps the frontend, which then refuses connections)
    /// under `policy`, and says which backends that adds and removes. The
    /// model is updated as if the writes succeeded.
    pub fn plan(&mut self, key: ServiceKey, backends: &[Backend], policy: &Policy) -> Plan {
        let mut ops = Vec::new();
        let mut unique = backends.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let wanted: Vec<BackendId> = unique
            .into_iter()
            .map(|backend| self.acquire(backend, &mut ops))
            .collect();

        let (id, old_slots, old_policy) = match self.frontends.remove(&key) {
            Some(frontend) => (frontend.id, frontend.slots, Some(frontend.policy)),
            None => (self.frontend_ids.allocate(), Vec::new(), None),
        };
        let slots = next_layout(&old_slots, &wanted);
        // Read before the old backends are released below.
        let change = BackendChange {
            new_frontend: old_policy.is_none(),
            added: difference(&wanted, &old_slots, &self.backend_by_id),
            removed: difference(&old_slots, &wanted, &self.backend_by_id),
            count: slots.len(),
        };

        for (slot, backend) in slots.iter().enumerate() {
            if old_slots.get(slot) != Some(backend) {
                ops.push(MapOp::PutSlot(slot_key(id, slot), *backend));
            }
        }
        let old_ranges: HashSet<SourceCidr> = old_policy
            .iter()
            .flat_map(|old| old.source_ranges.iter().copied())
            .collect();
        let new_ranges: HashSet<SourceCidr> = policy.source_ranges.iter().copied().collect();
        for cidr in &policy.source_ranges {
            if !old_ranges.contains(cidr) {
                let (range, prefix_len) = cidr.entry(id);
                ops.push(MapOp::PutSourceRange(range, prefix_len));
            }
        }
        let had_table = old_policy
            .as_ref()
            .is_some_and(|old| old.external && !old_slots.is_empty());
        let has_table = policy.external && !slots.is_empty();
        if has_table && (!had_table || slots != old_slots) {
            ops.push(self.maglev_op(id, &slots));
        }
        if old_policy.as_ref() != Some(policy) || slots.len() != old_slots.len() {
            ops.push(MapOp::PutService(
                key,
                policy.service_value(id, slots.len()),
            ));
        }
        for slot in slots.len()..old_slots.len() {
            ops.push(MapOp::DeleteSlot(slot_key(id, slot)));
        }
        let mut dropped_ranges: Vec<SourceCidr> =
            old_ranges.difference(&new_ranges).copied().collect();
        dropped_ranges.sort_unstable();
        for cidr in dropped_ranges {
            let (range, prefix_len) = cidr.entry(id);
            ops.push(MapOp::DeleteSourceRange(range, prefix_len));
        }
        if had_table && !has_table {
            ops.push(MapOp::DeleteMaglev(id));
        }
        for backend in old_slots {
            self.release(backend, &mut ops);
        }
        self.frontends.insert(
            key,
            Frontend {
                id,
                slots,
                policy: policy.clone(),
            },
        );
        Plan { ops, change }
    }

    /// The writes `plan` would make.
    #[cfg(test)]
    pub fn set(&mut self, key: ServiceKey, backends: &[Backend], policy: &Policy) -> Vec<MapOp> {
        self.plan(key, backends, policy).ops
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
        for cidr in &frontend.policy.source_ranges {
            let (range, prefix_len) = cidr.entry(frontend.id);
            ops.push(MapOp::DeleteSourceRange(range, prefix_len));
        }
        if frontend.policy.external && !frontend.slots.is_empty() {
            ops.push(MapOp::DeleteMaglev(frontend.id));
        }
        for backend in frontend.slots {
            self.release(backend, &mut ops);
        }
        ops.push(MapOp::DeleteStats(frontend.id));
        self.frontend_ids.release(frontend.id);
        ops
    }

    /// The Maglev table of frontend `id` whose slots hold `slots`: built
    /// over the backends themselves, so it is the same on every node, and
    /// stored as slot numbers, which this node's programs read.
    fn maglev_op(&self, id: u32, slots: &[BackendId]) -> MapOp {
        let backends: Vec<Backend> = slots.iter().map(|id| self.backend_by_id[id]).collect();
        let owners = maglev::table(&backends, self.maglev.size, self.maglev.seed);
        let mut table = Box::new(MaglevTable {
            slots: [0; MAGLEV_MAX_SIZE],
        });
        for (entry, owner) in table.slots.iter_mut().zip(owners) {
            *entry = owner;
        }
        MapOp::PutMaglev(id, MaglevEntries(table))
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

/// `ops` regrouped by map in make-before-break order (every backend, then
/// every slot, source range and Maglev table, then every frontend entry),
/// so that each map can be written in batches: the writes of a whole full
/// sync, say. Only writes that delete nothing are regrouped: after a delete
/// an id may be reused, and then their order matters. Others come back as
/// they were.
pub fn by_map(mut ops: Vec<MapOp>) -> Vec<MapOp> {
    let rank = |op: &MapOp| match op {
        MapOp::PutBackend(..) => Some(0),
        MapOp::PutSlot(..) => Some(1),
        MapOp::PutSourceRange(..) => Some(2),
        MapOp::PutMaglev(..) => Some(3),
        MapOp::PutService(..) => Some(4),
        _ => None,
    };
    if ops.iter().all(|op| rank(op).is_some()) {
        // Stable: writes to one map keep their order.
        ops.sort_by_key(rank);
    }
    ops
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
    use proxy_common::{PROTO_TCP, SERVICE_FLAG_AFFINITY};

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

    const PARAMS: MaglevParams = MaglevParams {
        size: MaglevSize::DEFAULT,
        seed: 1,
    };

    fn plain() -> Policy {
        Policy::default()
    }

    fn sticky(seconds: u32) -> Policy {
        Policy {
            affinity_timeout: Some(seconds),
            ..Policy::default()
        }
    }

    /// Applies ops to an in-memory copy of the maps, checking after every
    /// single write that no frontend reaches a missing slot, backend,
    /// Maglev table or source range.
    #[derive(Default)]
    struct Maps {
        services: HashMap<ServiceKey, ServiceValue>,
        slots: HashMap<BackendSlotKey, BackendId>,
        backends: HashMap<BackendId, Backend>,
        tables: HashMap<u32, MaglevEntries>,
        ranges: HashSet<(SourceRange, u32)>,
    }

    impl Maps {
        fn apply(&mut self, ops: &[MapOp]) {
            for op in ops {
                match op.clone() {
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
                    MapOp::PutMaglev(id, table) => {
                        self.tables.insert(id, table);
                    }
                    MapOp::DeleteMaglev(id) => {
                        self.tables.remove(&id).expect("deleted table existed");
                    }
                    MapOp::PutSourceRange(range, len) => {
                        self.ranges.insert((range, len));
                    }
                    MapOp::DeleteSourceRange(range, len) => {
                        assert!(self.ranges.remove(&(range, len)), "deleted range existed");
                    }
                    MapOp::DeleteStats(_) => {}
                }
                self.assert_no_dangling(op);
            }
        }

        fn assert_no_dangling(&self, after: &MapOp) {
            for value in self.services.values() {
                if value.flags & SERVICE_FLAG_EXTERNAL != 0 && value.backend_count > 0 {
                    let table = self
                        .tables
                        .get(&value.id)
                        .unwrap_or_else(|| panic!("no Maglev table after {after:?}"));
                    assert!(
                        table.0.slots[..MaglevSize::DEFAULT.get() as usize]
                            .iter()
                            .all(|slot| *slot < value.backend_count),
                        "Maglev table names a slot past the count after {after:?}"
                    );
                }
                if value.flags & SERVICE_FLAG_SOURCE_RANGES != 0 {
                    assert!(
                        self.ranges
                            .iter()
                            .any(|(range, _)| range.service_id == value.id),
                        "source ranges flagged but none written after {after:?}"
                    );
                }
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
                source_ranges: self.ranges.iter().copied().collect(),
                maglev_ids: self.tables.keys().copied().collect(),
            }
        }
    }

    #[test]
    fn a_new_frontend_is_written_after_its_slots_and_backends() {
        let mut programmed = Programmed::new(PARAMS);
        let ops = programmed.set(frontend(10), &[backend(2), backend(3)], &plain());
        assert!(matches!(ops.last(), Some(MapOp::PutService(_, v)) if v.backend_count == 2));
        let mut maps = Maps::default();
        maps.apply(&ops);
        assert_eq!(maps.reachable(&frontend(10)), vec![backend(2), backend(3)]);
    }

    #[test]
    fn writes_regrouped_by_map_never_dangle() {
        let mut programmed = Programmed::new(PARAMS);
        let mut ops = Vec::new();
        for port in 10..20 {
            let backends: Vec<Backend> = (0..port % 4 + 1).map(|b| backend(b + port)).collect();
            let policy = if port % 2 == 0 {
                external(&["192.0.2.0/24"])
            } else {
                plain()
            };
            ops.extend(programmed.set(frontend(port), &backends, &policy));
        }
        let regrouped = by_map(ops.clone());
        assert_ne!(regrouped, ops, "a full sync's writes are regrouped");
        // Applying checks, after every write, that nothing dangles.
        let mut maps = Maps::default();
        maps.apply(&regrouped);
        assert_eq!(
            maps.reachable(&frontend(13)),
            vec![backend(13), backend(14)]
        );

        // Writes that delete keep their order.
        let ops = programmed.set(frontend(13), &[backend(13)], &plain());
        assert!(ops.iter().any(|op| matches!(op, MapOp::DeleteSlot(_))));
        assert_eq!(by_map(ops.clone()), ops);
    }

    #[test]
    fn an_unchanged_frontend_costs_no_write() {
        let mut programmed = Programmed::new(PARAMS);
        programmed.set(frontend(10), &[backend(2), backend(3)], &plain());
        assert_eq!(
            programmed.set(frontend(10), &[backend(3), backend(2)], &plain()),
            vec![]
        );
    }

    #[test]
    fn removing_a_backend_moves_the_last_into_its_slot_then_shrinks() {
        let mut programmed = Programmed::new(PARAMS);
        let mut maps = Maps::default();
        maps.apply(&programmed.set(
            frontend(10),
            &[backend(2), backend(3), backend(4)],
            &plain(),
        ));
        let ops = programmed.set(frontend(10), &[backend(3), backend(4)], &plain());
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
        let mut programmed = Programmed::new(PARAMS);
        let mut maps = Maps::default();
        maps.apply(&programmed.set(frontend(10), &[backend(2)], &plain()));
        let ops = programmed.set(frontend(10), &[backend(2)], &sticky(30));
        assert!(
            matches!(ops.as_slice(), [MapOp::PutService(_, v)] if v.flags == SERVICE_FLAG_AFFINITY && v.affinity_timeout == 30),
            "{ops:?}"
        );
        maps.apply(&ops);
        let (mut adopted, repairs) = Programmed::adopt(maps.contents(), PARAMS);
        assert_eq!(repairs, vec![]);
        assert_eq!(
            adopted.set(frontend(10), &[backend(2)], &sticky(30)),
            vec![]
        );
        assert_eq!(adopted.set(frontend(10), &[backend(2)], &plain()).len(), 1);
    }

    #[test]
    fn a_frontend_without_endpoints_stays_with_count_zero() {
        let mut programmed = Programmed::new(PARAMS);
        let mut maps = Maps::default();
        maps.apply(&programmed.set(frontend(10), &[backend(2)], &plain()));
        maps.apply(&programmed.set(frontend(10), &[], &plain()));
        assert_eq!(maps.services[&frontend(10)].backend_count, 0);
        assert!(maps.slots.is_empty() && maps.backends.is_empty());
    }

    #[test]
    fn shared_backends_live_until_their_last_frontend_goes() {
        let mut programmed = Programmed::new(PARAMS);
        let mut maps = Maps::default();
        maps.apply(&programmed.set(frontend(10), &[backend(2)], &plain()));
        maps.apply(&programmed.set(frontend(11), &[backend(2), backend(3)], &plain()));
        assert_eq!(maps.backends.len(), 2);
        maps.apply(&programmed.remove(&frontend(10)));
        assert_eq!(maps.reachable(&frontend(11)), vec![backend(2), backend(3)]);
        maps.apply(&programmed.remove(&frontend(11)));
        assert!(maps.services.is_empty() && maps.slots.is_empty() && maps.backends.is_empty());
    }

    #[test]
    fn duplicate_backends_count_once() {
        let mut programmed = Programmed::new(PARAMS);
        let mut maps = Maps::default();
        maps.apply(&programmed.set(frontend(10), &[backend(2), backend(2)], &plain()));
        assert_eq!(maps.reachable(&frontend(10)), vec![backend(2)]);
        maps.apply(&programmed.remove(&frontend(10)));
        assert!(maps.backends.is_empty());
    }

    #[test]
    fn adopting_pinned_maps_needs_no_write_for_what_is_unchanged() {
        let mut before = Programmed::new(PARAMS);
        let mut maps = Maps::default();
        maps.apply(&before.set(frontend(10), &[backend(2), backend(3)], &plain()));
        maps.apply(&before.set(frontend(11), &[backend(3)], &plain()));

        let (mut after, repairs) = Programmed::adopt(maps.contents(), PARAMS);
        assert_eq!(repairs, vec![]);
        assert_eq!(
            after.set(frontend(10), &[backend(2), backend(3)], &plain()),
            vec![]
        );
        assert_eq!(after.set(frontend(11), &[backend(3)], &plain()), vec![]);
        // Ids continue past the adopted ones instead of colliding.
        maps.apply(&after.set(frontend(12), &[backend(4)], &plain()));
        assert_eq!(maps.reachable(&frontend(12)), vec![backend(4)]);
        assert_eq!(maps.reachable(&frontend(10)), vec![backend(2), backend(3)]);
    }

    #[test]
    fn adopting_repairs_what_an_interrupted_run_left() {
        let mut maps = Maps::default();
        let mut before = Programmed::new(PARAMS);
        maps.apply(&before.set(frontend(10), &[backend(2), backend(3)], &plain()));
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

        let (_, repairs) = Programmed::adopt(maps.contents(), PARAMS);
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

    fn external(ranges: &[&str]) -> Policy {
        Policy {
            external: true,
            source_ranges: ranges
                .iter()
                .map(|range| {
                    let (network, len) = range.split_once('/').unwrap();
                    SourceCidr {
                        network: network.parse().unwrap(),
                        prefix_len: len.parse().unwrap(),
                    }
                })
                .collect(),
            ..Policy::default()
        }
    }

    #[test]
    fn an_external_frontend_gets_its_maglev_table_before_its_entry() {
        let mut programmed = Programmed::new(PARAMS);
        let mut maps = Maps::default();
        let ops = programmed.set(frontend(10), &[backend(2), backend(3)], &external(&[]));
        let table = ops.iter().position(|op| matches!(op, MapOp::PutMaglev(..)));
        let entry = ops
            .iter()
            .position(|op| matches!(op, MapOp::PutService(..)));
        assert!(table.unwrap() < entry.unwrap(), "{ops:?}");
        maps.apply(&ops);
        // A changed backend set rewrites the table; the apply checks that
        // no entry ever names a slot past the count.
        maps.apply(&programmed.set(frontend(10), &[backend(3)], &external(&[])));
        maps.apply(&programmed.set(frontend(10), &[], &external(&[])));
        assert!(maps.tables.is_empty(), "a table without backends stays");
        maps.apply(&programmed.set(frontend(10), &[backend(4)], &external(&[])));
        maps.apply(&programmed.remove(&frontend(10)));
        assert!(maps.tables.is_empty() && maps.services.is_empty());
    }

    #[test]
    fn the_same_backends_give_the_same_table_in_any_order_and_on_any_node() {
        let mut node1 = Programmed::new(PARAMS);
        let mut node2 = Programmed::new(PARAMS);
        // Node 2 has seen another frontend first: its ids differ.
        node2.set(frontend(11), &[backend(9)], &plain());
        let table = |ops: Vec<MapOp>, programmed: &Programmed| -> Vec<Backend> {
            let Some(MapOp::PutMaglev(_, table)) = ops
                .into_iter()
                .find(|op| matches!(op, MapOp::PutMaglev(..)))
            else {
                panic!("no table written");
            };
            let slots = &programmed.frontends[&frontend(10)].slots;
            table.0.slots[..PARAMS.size.get() as usize]
                .iter()
                .map(|slot| programmed.backend_by_id[&slots[*slot as usize]])
                .collect()
        };
        let ops1 = node1.set(
            frontend(10),
            &[backend(2), backend(3), backend(4)],
            &external(&[]),
        );
        let ops2 = node2.set(
            frontend(10),
            &[backend(4), backend(2), backend(3)],
            &external(&[]),
        );
        assert_eq!(table(ops1, &node1), table(ops2, &node2));
    }

    #[test]
    fn source_ranges_are_written_before_the_flag_and_removed_after_it() {
        let mut programmed = Programmed::new(PARAMS);
        let mut maps = Maps::default();
        maps.apply(&programmed.set(frontend(10), &[backend(2)], &external(&[])));
        let ops = programmed.set(frontend(10), &[backend(2)], &external(&["192.0.2.0/24"]));
        assert!(matches!(ops[0], MapOp::PutSourceRange(_, 56)), "{ops:?}");
        maps.apply(&ops);
        let ops = programmed.set(frontend(10), &[backend(2)], &external(&["198.51.100.7/32"]));
        maps.apply(&ops);
        assert!(
            matches!(ops.last(), Some(MapOp::DeleteSourceRange(_, 56))),
            "{ops:?}"
        );
        let ops = programmed.set(frontend(10), &[backend(2)], &external(&[]));
        assert!(
            matches!(
                ops.as_slice(),
                [MapOp::PutService(..), MapOp::DeleteSourceRange(_, 64)]
            ),
            "{ops:?}"
        );
        maps.apply(&ops);
        assert!(maps.ranges.is_empty());
    }

    #[test]
    fn adopting_rewrites_tables_and_drops_what_no_frontend_uses() {
        let mut before = Programmed::new(PARAMS);
        let mut maps = Maps::default();
        maps.apply(&before.set(frontend(10), &[backend(2)], &external(&["192.0.2.0/24"])));
        // Left by a crashed run: a table and a range of no frontend.
        maps.tables
            .insert(77, maps.tables.values().next().unwrap().clone());
        let (stray, stray_len) = SourceCidr {
            network: "203.0.113.0".parse().unwrap(),
            prefix_len: 24,
        }
        .entry(78);
        maps.ranges.insert((stray, stray_len));
        let (mut after, repairs) = Programmed::adopt(maps.contents(), PARAMS);
        assert!(repairs.iter().any(|op| matches!(op, MapOp::PutMaglev(..))));
        assert!(repairs.contains(&MapOp::DeleteMaglev(77)));
        assert!(repairs.contains(&MapOp::DeleteSourceRange(stray, stray_len)));
        maps.apply(&repairs);
        assert_eq!(
            after.set(frontend(10), &[backend(2)], &external(&["192.0.2.0/24"])),
            vec![]
        );
    }
}
