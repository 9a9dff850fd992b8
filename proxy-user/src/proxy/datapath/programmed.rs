//! What the datapath maps hold, and the map writes that move them to a new
//! state without the programs ever reading a dangling id.
//!
//! Order of every change (make-before-break):
//! 1. the frontend's address, if no other frontend has it, and new
//!    backends are written,
//! 2. slots are written (a changed slot is overwritten in place),
//! 3. new source ranges and the Maglev table (which names slots) are
//!    written,
//! 4. the frontend entry is written last when it is new or its count or
//!    policy changes,
//! 5. then slots past the new count, source ranges and tables the frontend
//!    no longer has, and backends no slot uses, are removed.
//!
//! A frontend is removed in the reverse order: its entry first, then its
//! slots, ranges and table, then the backends nothing else uses, then its
//! address if no other frontend has it. Between any
//! two writes, everything a program can reach from a frontend entry exists.
//!
//! Frontends and backends of both families share one id space each: a
//! `PutService` or `PutBackend` goes to its family's map, slots and the rest
//! are shared, but for the address entries: each family has its own
//! frontend addresses map.
use std::{
    collections::{HashMap, HashSet},
    fmt,
};

use proxy_common::{
    BackendId, BackendSlotKey, MAGLEV_MAX_SIZE, MaglevTable, SERVICE_FLAG_EXTERNAL,
    SERVICE_FLAG_SOURCE_RANGES, ServiceValue,
};

use super::{
    ids::IdAllocator,
    keys::{BackendKey, FrontendAddress, FrontendKey, SourceRangeKey},
    maglev::{self, MaglevSize},
};
use crate::proxy::policy::{Policy, SourceCidr};

/// One write to one map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapOp {
    /// An address of some frontend, which the per-packet programs look at.
    PutAddress(FrontendAddress),
    PutBackend(BackendId, BackendKey),
    PutSlot(BackendSlotKey, BackendId),
    PutSourceRange(SourceRangeKey),
    PutMaglev(u32, MaglevEntries),
    PutService(FrontendKey, ServiceValue),
    DeleteService(FrontendKey),
    DeleteSlot(BackendSlotKey),
    DeleteSourceRange(SourceRangeKey),
    DeleteMaglev(u32),
    DeleteBackend(BackendId),
    DeleteAddress(FrontendAddress),
    /// The counters of a removed frontend (absent if it never saw traffic).
    DeleteStats(u32),
}

/// The map a write goes to: runs of writes with one target are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target(std::mem::Discriminant<MapOp>, bool);

impl MapOp {
    pub fn target(&self) -> Target {
        let ipv6 = matches!(
            self,
            MapOp::PutService(FrontendKey::V6(_), _)
                | MapOp::DeleteService(FrontendKey::V6(_))
                | MapOp::PutBackend(_, BackendKey::V6(_))
                | MapOp::PutAddress(FrontendAddress::V6(_))
                | MapOp::DeleteAddress(FrontendAddress::V6(_))
                | MapOp::PutSourceRange(SourceRangeKey::V6(..))
                | MapOp::DeleteSourceRange(SourceRangeKey::V6(..))
        );
        Target(std::mem::discriminant(self), ipv6)
    }
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
    pub services: Vec<(FrontendKey, ServiceValue)>,
    pub slots: Vec<(BackendSlotKey, BackendId)>,
    pub backends: Vec<(BackendId, BackendKey)>,
    /// Entries of both families' source ranges tries.
    pub source_ranges: Vec<SourceRangeKey>,
    /// Frontend ids that have a Maglev table.
    pub maglev_ids: Vec<u32>,
    /// The frontend addresses maps' keys.
    pub addresses: Vec<FrontendAddress>,
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
    pub added: Vec<BackendKey>,
    pub removed: Vec<BackendKey>,
    /// Backends after the change.
    pub count: usize,
}

/// The backends of `ids` that are not in `other`.
fn difference(
    ids: &[BackendId],
    other: &[BackendId],
    backend_by_id: &HashMap<BackendId, BackendKey>,
) -> Vec<BackendKey> {
    let other: HashSet<&BackendId> = other.iter().collect();
    ids.iter()
        .filter(|id| !other.contains(id))
        .map(|id| backend_by_id[id])
        .collect()
}

/// The userspace mirror of the service maps.
#[derive(Debug)]
pub struct Programmed {
    frontends: HashMap<FrontendKey, Frontend>,
    backends: HashMap<BackendKey, BackendEntry>,
    backend_by_id: HashMap<BackendId, BackendKey>,
    /// How many frontends have each address.
    addresses: HashMap<FrontendAddress, usize>,
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
            addresses: HashMap::new(),
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
        let backend_by_id: HashMap<BackendId, BackendKey> =
            contents.backends.iter().copied().collect();
        let slots: HashMap<BackendSlotKey, BackendId> = contents.slots.iter().copied().collect();
        let mut ranges_by_id: HashMap<u32, Vec<SourceCidr>> = HashMap::new();
        for entry in &contents.source_ranges {
            ranges_by_id
                .entry(entry.service_id())
                .or_default()
                .push(SourceCidr::of_entry(entry));
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
            *programmed.addresses.entry(key.address()).or_default() += 1;
            programmed.frontends.insert(
                key,
                Frontend {
                    id: value.id,
                    slots: complete,
                    policy,
                },
            );
        }
        // Maps pinned by an agent that kept no addresses lack them all:
        // written right after the repairs of frontends, which already
        // serve.
        let held: HashSet<FrontendAddress> = contents.addresses.iter().copied().collect();
        let mut missing: Vec<FrontendAddress> = programmed
            .addresses
            .keys()
            .filter(|address| !held.contains(address))
            .copied()
            .collect();
        missing.sort_unstable();
        ops.extend(missing.into_iter().map(MapOp::PutAddress));
        let mut stale_addresses: Vec<FrontendAddress> = held
            .into_iter()
            .filter(|address| !programmed.addresses.contains_key(address))
            .collect();
        stale_addresses.sort_unstable();
        ops.extend(stale_addresses.into_iter().map(MapOp::DeleteAddress));

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
        ops.extend(stale_ranges.into_iter().map(MapOp::DeleteSourceRange));

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

    pub fn keys(&self) -> impl Iterator<Item = &FrontendKey> {
        self.frontends.keys()
    }

    /// The backends a frontend currently balances to, by slot.
    pub fn backends(&self, key: &FrontendKey) -> Option<Vec<BackendKey>> {
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
    pub fn plan(&mut self, key: FrontendKey, backends: &[BackendKey], policy: &Policy) -> Plan {
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
            None => {
                self.acquire_address(key.address(), &mut ops);
                (self.frontend_ids.allocate(), Vec::new(), None)
            }
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
                ops.push(MapOp::PutSourceRange(cidr.entry(id)));
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
            ops.push(MapOp::DeleteSourceRange(cidr.entry(id)));
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
    pub fn set(
        &mut self,
        key: FrontendKey,
        backends: &[BackendKey],
        policy: &Policy,
    ) -> Vec<MapOp> {
        self.plan(key, backends, policy).ops
    }

    /// Plans the writes that remove a frontend and everything only it used.
    pub fn remove(&mut self, key: &FrontendKey) -> Vec<MapOp> {
        let Some(frontend) = self.frontends.remove(key) else {
            return Vec::new();
        };
        let mut ops = vec![MapOp::DeleteService(*key)];
        ops.extend(
            (0..frontend.slots.len()).map(|slot| MapOp::DeleteSlot(slot_key(frontend.id, slot))),
        );
        for cidr in &frontend.policy.source_ranges {
            ops.push(MapOp::DeleteSourceRange(cidr.entry(frontend.id)));
        }
        if frontend.policy.external && !frontend.slots.is_empty() {
            ops.push(MapOp::DeleteMaglev(frontend.id));
        }
        for backend in frontend.slots {
            self.release(backend, &mut ops);
        }
        self.release_address(key.address(), &mut ops);
        ops.push(MapOp::DeleteStats(frontend.id));
        self.frontend_ids.release(frontend.id);
        ops
    }

    /// Counts a new frontend at `address`; its first is written first.
    fn acquire_address(&mut self, address: FrontendAddress, ops: &mut Vec<MapOp>) {
        let users = self.addresses.entry(address).or_default();
        if *users == 0 {
            ops.insert(0, MapOp::PutAddress(address));
        }
        *users += 1;
    }

    /// Counts a removed frontend at `address`; after its last, it goes.
    fn release_address(&mut self, address: FrontendAddress, ops: &mut Vec<MapOp>) {
        let users = self
            .addresses
            .get_mut(&address)
            .expect("every frontend's address is counted");
        *users -= 1;
        if *users == 0 {
            self.addresses.remove(&address);
            ops.push(MapOp::DeleteAddress(address));
        }
    }

    /// The Maglev table of frontend `id` whose slots hold `slots`: built
    /// over the backends themselves, so it is the same on every node, and
    /// stored as slot numbers, which this node's programs read.
    fn maglev_op(&self, id: u32, slots: &[BackendId]) -> MapOp {
        let backends: Vec<BackendKey> = slots.iter().map(|id| self.backend_by_id[id]).collect();
        let owners = maglev::table(&backends, self.maglev.size, self.maglev.seed);
        let mut table = Box::new(MaglevTable {
            slots: [0; MAGLEV_MAX_SIZE],
        });
        for (entry, owner) in table.slots.iter_mut().zip(owners) {
            *entry = owner;
        }
        MapOp::PutMaglev(id, MaglevEntries(table))
    }

    fn acquire(&mut self, backend: BackendKey, ops: &mut Vec<MapOp>) -> BackendId {
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

/// `ops` regrouped by map in make-before-break order (every address and
/// backend, then every slot, source range and Maglev table, then every frontend entry),
/// so that each map can be written in batches: the writes of a whole full
/// sync, say. Only writes that delete nothing are regrouped: after a delete
/// an id may be reused, and then their order matters. Others come back as
/// they were.
pub fn by_map(mut ops: Vec<MapOp>) -> Vec<MapOp> {
    let rank = |op: &MapOp| match op {
        MapOp::PutAddress(..) => Some(0),
        MapOp::PutBackend(..) => Some(1),
        MapOp::PutSlot(..) => Some(2),
        MapOp::PutSourceRange(..) => Some(3),
        MapOp::PutMaglev(..) => Some(4),
        MapOp::PutService(..) => Some(5),
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
mod tests;
