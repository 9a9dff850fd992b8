use super::*;
use std::net::Ipv6Addr;

use proxy_common::{
    Backend, PROTO_TCP, SERVICE_FLAG_AFFINITY, ServiceKey, SourceRange6, ipv6_words,
};

fn frontend(last_octet: u8) -> FrontendKey {
    FrontendKey::V4(ServiceKey {
        address: u32::from_ne_bytes([10, 96, 0, last_octet]),
        port: 80u16.to_be(),
        protocol: PROTO_TCP,
        pad: 0,
    })
}

fn backend(last_octet: u8) -> BackendKey {
    BackendKey::V4(Backend {
        address: u32::from_ne_bytes([10, 244, 1, last_octet]),
        port: 8080u16.to_be(),
        protocol: PROTO_TCP,
        pad: 0,
    })
}

fn frontend6(last: u16) -> FrontendKey {
    FrontendKey::new(
        format!("fd00:10:96::{last:x}").parse().unwrap(),
        80u16.to_be(),
        PROTO_TCP,
    )
}

fn backend6(last: u16) -> BackendKey {
    BackendKey::new(
        format!("fd00:10:244:1::{last:x}").parse().unwrap(),
        8080u16.to_be(),
        PROTO_TCP,
    )
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
/// Maglev table or source range, nor lacks its address.
#[derive(Default)]
struct Maps {
    services: HashMap<FrontendKey, ServiceValue>,
    slots: HashMap<BackendSlotKey, BackendId>,
    backends: HashMap<BackendId, BackendKey>,
    tables: HashMap<u32, MaglevEntries>,
    ranges: HashSet<SourceRangeKey>,
    addresses: HashSet<FrontendAddress>,
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
                MapOp::PutSourceRange(range) => {
                    self.ranges.insert(range);
                }
                MapOp::DeleteSourceRange(range) => {
                    assert!(self.ranges.remove(&range), "deleted range existed");
                }
                MapOp::PutAddress(address) => {
                    self.addresses.insert(address);
                }
                MapOp::DeleteAddress(address) => {
                    assert!(self.addresses.remove(&address), "deleted address existed");
                }
                MapOp::DeleteStats(_) => {}
            }
            self.assert_no_dangling(op);
        }
    }

    fn assert_no_dangling(&self, after: &MapOp) {
        for (key, value) in &self.services {
            assert!(
                self.addresses.contains(&key.address()),
                "frontend {key} without its address after {after:?}"
            );
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
                        .any(|range| range.service_id() == value.id),
                    "source ranges flagged but none written after {after:?}"
                );
            }
            for slot in 0..value.backend_count {
                let id = self.slots.get(&BackendSlotKey {
                    service_id: value.id,
                    slot,
                });
                let id = id.unwrap_or_else(|| panic!("dangling slot {slot} after {after:?}"));
                let backend = self
                    .backends
                    .get(id)
                    .unwrap_or_else(|| panic!("dangling backend {id} after {after:?}"));
                assert_eq!(
                    matches!(key, FrontendKey::V6(_)),
                    matches!(backend, BackendKey::V6(_)),
                    "frontend {key} reaches backend {backend} of the other family after {after:?}"
                );
            }
        }
    }

    fn reachable(&self, key: &FrontendKey) -> Vec<BackendKey> {
        let value = self.services[key];
        let mut backends: Vec<BackendKey> = (0..value.backend_count)
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
            addresses: self.addresses.iter().copied().collect(),
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
        let backends: Vec<BackendKey> = (0..port % 4 + 1).map(|b| backend(b + port)).collect();
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
    maps.addresses.insert(frontend(11).address());
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
    let table = |ops: Vec<MapOp>, programmed: &Programmed| -> Vec<BackendKey> {
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
    assert!(
        matches!(ops[0], MapOp::PutSourceRange(SourceRangeKey::V4(_, 56))),
        "{ops:?}"
    );
    maps.apply(&ops);
    let ops = programmed.set(frontend(10), &[backend(2)], &external(&["198.51.100.7/32"]));
    maps.apply(&ops);
    assert!(
        matches!(
            ops.last(),
            Some(MapOp::DeleteSourceRange(SourceRangeKey::V4(_, 56)))
        ),
        "{ops:?}"
    );
    let ops = programmed.set(frontend(10), &[backend(2)], &external(&[]));
    assert!(
        matches!(
            ops.as_slice(),
            [
                MapOp::PutService(..),
                MapOp::DeleteSourceRange(SourceRangeKey::V4(_, 64))
            ]
        ),
        "{ops:?}"
    );
    maps.apply(&ops);
    assert!(maps.ranges.is_empty());
}

#[test]
fn an_ipv6_frontends_source_ranges_go_to_the_ipv6_trie_and_are_adopted_back() {
    let mut programmed = Programmed::new(PARAMS);
    let mut maps = Maps::default();
    let ranges = external(&["2001:db8::/32", "2001:db8:1::/48"]);
    let ops = programmed.set(frontend6(10), &[backend6(2)], &ranges);
    let written: Vec<&SourceRangeKey> = ops
        .iter()
        .filter_map(|op| match op {
            MapOp::PutSourceRange(range) => Some(range),
            _ => None,
        })
        .collect();
    let id = written[0].service_id();
    let words = |address: &str| ipv6_words(address.parse::<Ipv6Addr>().unwrap().octets());
    let entry = |address, prefix_len| {
        let range = SourceRange6 {
            service_id: id,
            address: words(address),
        };
        SourceRangeKey::V6(range, prefix_len)
    };
    assert_eq!(
        written,
        [&entry("2001:db8::", 64), &entry("2001:db8:1::", 80)]
    );
    // Not batched with an IPv4 range: each family's entries go to its trie.
    let v4 = SourceCidr {
        network: "192.0.2.0".parse().unwrap(),
        prefix_len: 24,
    };
    assert_ne!(
        MapOp::PutSourceRange(*written[0]).target(),
        MapOp::PutSourceRange(v4.entry(id)).target()
    );
    maps.apply(&ops);

    let (mut adopted, repairs) = Programmed::adopt(maps.contents(), PARAMS);
    assert!(
        repairs.iter().all(|op| matches!(op, MapOp::PutMaglev(..))),
        "{repairs:?}"
    );
    assert_eq!(adopted.set(frontend6(10), &[backend6(2)], &ranges), vec![]);
    maps.apply(&adopted.remove(&frontend6(10)));
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
    let stray = SourceCidr {
        network: "203.0.113.0".parse().unwrap(),
        prefix_len: 24,
    }
    .entry(78);
    maps.ranges.insert(stray);
    let (mut after, repairs) = Programmed::adopt(maps.contents(), PARAMS);
    assert!(repairs.iter().any(|op| matches!(op, MapOp::PutMaglev(..))));
    assert!(repairs.contains(&MapOp::DeleteMaglev(77)));
    assert!(repairs.contains(&MapOp::DeleteSourceRange(stray)));
    maps.apply(&repairs);
    assert_eq!(
        after.set(frontend(10), &[backend(2)], &external(&["192.0.2.0/24"])),
        vec![]
    );
}

#[test]
fn an_address_stays_while_any_frontend_has_it() {
    let mut programmed = Programmed::new(PARAMS);
    let mut maps = Maps::default();
    let http = frontend(10);
    let FrontendKey::V4(http_key) = http else {
        unreachable!("an IPv4 frontend")
    };
    let https = FrontendKey::V4(ServiceKey {
        port: 443u16.to_be(),
        ..http_key
    });
    maps.apply(&programmed.set(http, &[backend(2)], &plain()));
    maps.apply(&programmed.set(https, &[backend(2)], &plain()));
    assert_eq!(
        maps.addresses,
        HashSet::from([FrontendAddress::V4(http_key.address)])
    );

    let ops = programmed.remove(&http);
    assert!(!ops.iter().any(|op| matches!(op, MapOp::DeleteAddress(_))));
    maps.apply(&ops);
    let ops = programmed.remove(&https);
    assert_eq!(
        ops.iter()
            .position(|op| matches!(op, MapOp::DeleteAddress(_))),
        ops.iter()
            .rposition(|op| !matches!(op, MapOp::DeleteStats(_))),
        "the address goes after everything else: {ops:?}"
    );
    maps.apply(&ops);
    assert!(maps.addresses.is_empty());
}

#[test]
fn adoption_writes_missing_addresses_and_drops_stale_ones() {
    let mut programmed = Programmed::new(PARAMS);
    let mut maps = Maps::default();
    maps.apply(&programmed.set(frontend(10), &[backend(2)], &plain()));
    maps.apply(&programmed.set(frontend(11), &[backend(3)], &plain()));
    // Maps of an agent that kept no addresses, and one address left over.
    let stale = frontend(12).address();
    let mut contents = maps.contents();
    contents.addresses = vec![stale];

    let (_, ops) = Programmed::adopt(contents, PARAMS);
    let mut wanted = vec![
        MapOp::PutAddress(frontend(10).address()),
        MapOp::PutAddress(frontend(11).address()),
    ];
    wanted.sort_by_key(|op| match op {
        MapOp::PutAddress(address) => *address,
        _ => unreachable!(),
    });
    wanted.push(MapOp::DeleteAddress(stale));
    assert_eq!(ops, wanted);
}

#[test]
fn ipv6_frontends_share_the_id_spaces_and_write_their_own_address() {
    let mut programmed = Programmed::new(PARAMS);
    let mut maps = Maps::default();
    maps.apply(&programmed.set(frontend(10), &[backend(2), backend(3)], &plain()));
    let ops = programmed.set(frontend6(10), &[backend6(2), backend6(3)], &plain());
    // The IPv6 address first, into the IPv6 addresses map.
    assert_eq!(
        ops.first(),
        Some(&MapOp::PutAddress(frontend6(10).address())),
        "{ops:?}"
    );
    assert!(matches!(frontend6(10).address(), FrontendAddress::V6(_)));
    maps.apply(&ops);
    // One frontend id space and one backend id space over both families.
    let mut ids: Vec<u32> = maps.services.values().map(|value| value.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(maps.backends.len(), 4);
    assert_eq!(maps.reachable(&frontend6(10)), [backend6(2), backend6(3)]);
    assert_eq!(maps.addresses.len(), 2);

    let ops = programmed.set(frontend6(10), &[backend6(3)], &plain());
    maps.apply(&ops);
    assert_eq!(maps.reachable(&frontend6(10)), [backend6(3)]);
    let ops = programmed.remove(&frontend6(10));
    assert!(
        ops.contains(&MapOp::DeleteAddress(frontend6(10).address())),
        "{ops:?}"
    );
    maps.apply(&ops);
    assert_eq!(maps.addresses, HashSet::from([frontend(10).address()]));
    assert_eq!(maps.services.len(), 1);
    assert_eq!(maps.backends.len(), 2);
    assert_eq!(maps.reachable(&frontend(10)), [backend(2), backend(3)]);
}

#[test]
fn ipv6_frontends_are_adopted_after_a_restart() {
    let mut programmed = Programmed::new(PARAMS);
    let mut maps = Maps::default();
    maps.apply(&programmed.set(frontend(10), &[backend(2)], &plain()));
    maps.apply(&programmed.set(frontend6(10), &[backend6(2)], &plain()));
    let (mut adopted, repairs) = Programmed::adopt(maps.contents(), PARAMS);
    assert_eq!(repairs, []);
    assert_eq!(adopted.backends(&frontend6(10)), Some(vec![backend6(2)]));
    // Unchanged frontends cost nothing; a new one takes fresh ids.
    assert_eq!(adopted.set(frontend6(10), &[backend6(2)], &plain()), []);
    let ops = adopted.set(frontend6(11), &[backend6(4)], &plain());
    maps.apply(&ops);
    let mut ids: Vec<u32> = maps.services.values().map(|value| value.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(maps.backends.len(), 3);
    assert_eq!(maps.reachable(&frontend6(11)), [backend6(4)]);
}

#[test]
fn writes_of_each_family_run_to_their_own_map() {
    let put4 = MapOp::PutService(frontend(10), plain().service_value(0, 0));
    let put6 = MapOp::PutService(frontend6(10), plain().service_value(1, 0));
    assert_ne!(put4.target(), put6.target());
    assert_eq!(
        put6.target(),
        MapOp::PutService(frontend6(11), plain().service_value(2, 0)).target()
    );
    assert_ne!(
        MapOp::PutBackend(0, backend(2)).target(),
        MapOp::PutBackend(1, backend6(2)).target()
    );
    assert_ne!(
        MapOp::PutAddress(frontend(10).address()).target(),
        MapOp::PutAddress(frontend6(10).address()).target()
    );
    assert_ne!(
        MapOp::DeleteAddress(frontend(10).address()).target(),
        MapOp::DeleteAddress(frontend6(10).address()).target()
    );
}

#[test]
fn adoption_writes_missing_ipv6_addresses_and_drops_stale_ones() {
    let mut programmed = Programmed::new(PARAMS);
    let mut maps = Maps::default();
    maps.apply(&programmed.set(frontend6(10), &[backend6(2)], &plain()));
    // Maps of an agent that had no IPv6 addresses map, and one left over.
    let stale = frontend6(12).address();
    let mut contents = maps.contents();
    contents.addresses = vec![stale];

    let (_, ops) = Programmed::adopt(contents, PARAMS);
    assert_eq!(
        ops,
        [
            MapOp::PutAddress(frontend6(10).address()),
            MapOp::DeleteAddress(stale)
        ]
    );
}
