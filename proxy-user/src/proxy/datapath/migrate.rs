//! Carries per-flow state from the maps of an older layout version into
//! this agent's maps during a switch-over, so that established flows keep
//! their backends (and NATed flows their ports) across the upgrade.
//!
//! The new maps are already programmed from the cluster's state when this
//! runs, under ids of their own: every carried entry has its frontend and
//! backend ids translated through what the two sets of service maps hold
//! (old id → frontend or backend → new id), and an entry whose frontend or
//! backend is gone is left behind. Maps whose layout changed are not
//! carried; their state is rebuilt as flows come (a NodePort flow to a
//! remote backend then breaks, which is what the versioned layout exists
//! to make rare).
use std::{collections::HashMap as StdHashMap, hash::Hash, path::Path};

use aya::{
    Pod,
    maps::{HashMap, Map, MapData, MapError},
};
use proxy_common::{
    AffinityKey, AffinityValue, Backend, BackendId, CtKey, CtValue, ServiceKey, ServiceValue,
    SockRevNatKey, SockRevNatKey6, SockRevNatValue, SockRevNatValue6, map_names,
};
use tracing::{info, warn};

/// `bpf_map_update_elem` flag: only create, never overwrite.
const BPF_NOEXIST: u64 = 1;

/// When a carry runs: before the programs are swapped (everything is
/// copied), or after (only what the new programs have not written since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    Before,
    After,
}

pub fn carry_flow_state(old_dir: &Path, new_dir: &Path, pass: Pass) {
    let Some(ids) = IdTranslation::between(old_dir, new_dir) else {
        info!(from = %old_dir.display(), "per-flow state not carried over (the service maps' layout changed)");
        return;
    };
    let flags = match pass {
        Pass::Before => 0,
        Pass::After => BPF_NOEXIST,
    };
    copy::<CtKey, CtValue>(
        old_dir,
        new_dir,
        map_names::CONNTRACK,
        pass,
        flags,
        |key, value| {
            let value = CtValue {
                backend_id: ids.backend(value.backend_id)?,
                service_id: ids.service(value.service_id)?,
                ..value
            };
            Some((key, value))
        },
    );
    copy::<SockRevNatKey, SockRevNatValue>(
        old_dir,
        new_dir,
        map_names::SOCK_REV_NAT,
        pass,
        flags,
        |key, value| Some((key, value)),
    );
    copy::<SockRevNatKey6, SockRevNatValue6>(
        old_dir,
        new_dir,
        map_names::SOCK_REV_NAT6,
        pass,
        flags,
        |key, value| Some((key, value)),
    );
    copy::<AffinityKey, AffinityValue>(
        old_dir,
        new_dir,
        map_names::AFFINITY,
        pass,
        flags,
        |key, value| {
            // The slot is checked against the new slots on use.
            let key = AffinityKey {
                service_id: ids.service(key.service_id)?,
                ..key
            };
            let value = AffinityValue {
                backend_id: ids.backend(value.backend_id)?,
                ..value
            };
            Some((key, value))
        },
    );
}

/// Old frontend and backend ids to new ones.
struct IdTranslation {
    services: StdHashMap<u32, u32>,
    backends: StdHashMap<BackendId, BackendId>,
}

impl IdTranslation {
    fn between(old_dir: &Path, new_dir: &Path) -> Option<Self> {
        let services = translate::<ServiceKey, ServiceValue, _>(
            old_dir,
            new_dir,
            map_names::SERVICES,
            |key, value| (*key, value.id),
        )?;
        let backends = translate::<BackendId, Backend, _>(
            old_dir,
            new_dir,
            map_names::BACKENDS,
            |id, backend| (*backend, *id),
        )?;
        Some(Self { services, backends })
    }

    fn service(&self, old: u32) -> Option<u32> {
        self.services.get(&old).copied()
    }

    fn backend(&self, old: BackendId) -> Option<BackendId> {
        self.backends.get(&old).copied()
    }
}

/// Old id → new id of the objects map `name` holds in both directories,
/// `identify` giving each entry's object and id.
fn translate<K: Pod, V: Pod, O: Hash + Eq>(
    old_dir: &Path,
    new_dir: &Path,
    name: &'static str,
    identify: impl Fn(&K, &V) -> (O, u32),
) -> Option<StdHashMap<u32, u32>> {
    let read = |dir: &Path| -> Option<Vec<(K, V)>> {
        let data = MapData::from_pin(dir.join(name)).ok()?;
        let map: HashMap<MapData, K, V> = HashMap::try_from(Map::HashMap(data)).ok()?;
        map.iter().collect::<Result<_, _>>().ok()
    };
    let new_ids: StdHashMap<O, u32> = read(new_dir)?
        .iter()
        .map(|(key, value)| identify(key, value))
        .collect();
    Some(
        read(old_dir)?
            .iter()
            .filter_map(|(key, value)| {
                let (object, old_id) = identify(key, value);
                Some((old_id, *new_ids.get(&object)?))
            })
            .collect(),
    )
}

/// Copies the entries of LRU map `name` through `carry`, which translates
/// an entry or leaves it behind.
fn copy<K: Pod, V: Pod>(
    old_dir: &Path,
    new_dir: &Path,
    name: &'static str,
    pass: Pass,
    flags: u64,
    carry: impl Fn(K, V) -> Option<(K, V)>,
) {
    let open = |dir: &Path| -> Option<HashMap<MapData, K, V>> {
        let data = MapData::from_pin(dir.join(name)).ok()?;
        // A size mismatch is refused here: such state is not carried.
        HashMap::try_from(Map::LruHashMap(data)).ok()
    };
    let (Some(old), Some(mut new)) = (open(old_dir), open(new_dir)) else {
        info!(map = name, from = %old_dir.display(), "per-flow state not carried over (missing, or its layout changed)");
        return;
    };
    let (mut copied, mut left) = (0usize, 0usize);
    for entry in old.iter() {
        let Ok((key, value)) = entry else { break };
        let Some((key, value)) = carry(key, value) else {
            left += 1;
            continue;
        };
        match new.insert(key, value, flags) {
            Ok(()) => copied += 1,
            // Already written by the new programs: theirs is newer.
            Err(MapError::SyscallError(error))
                if error.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                left += 1;
            }
            Err(error) => {
                warn!(map = name, %error, "carrying per-flow state over stopped early");
                break;
            }
        }
    }
    info!(map = name, entries = copied, left_behind = left, from = %old_dir.display(), ?pass, "per-flow state carried over");
}

#[cfg(test)]
mod tests {
    use std::{fs, path::PathBuf};

    use aya::maps::{HashMap, Map, MapData};
    use aya_obj::generated::bpf_map_type::{self, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH};
    use proxy_common::{SockRevNatKey6, SockRevNatValue6, ipv6_words};

    use super::*;

    /// Two layout directories on bpffs, removed with their pins at the end.
    struct Layouts {
        root: PathBuf,
    }

    impl Layouts {
        fn new() -> Self {
            let root = PathBuf::from(format!(
                "/sys/fs/bpf/skiff-migrate-test-{}",
                std::process::id()
            ));
            for dir in ["old", "new"] {
                fs::create_dir_all(root.join(dir)).expect("bpffs is mounted and writable");
            }
            Self { root }
        }

        fn dir(&self, name: &str) -> PathBuf {
            self.root.join(name)
        }
    }

    impl Drop for Layouts {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    /// A pinned map of `map_type` named `name` in `dir`, as the loader
    /// leaves one.
    fn pinned<K: Pod, V: Pod>(
        dir: &Path,
        name: &str,
        map_type: bpf_map_type,
    ) -> HashMap<MapData, K, V> {
        let definition = aya_obj::Map::new_from_params(
            map_type as u32,
            size_of::<K>() as u32,
            size_of::<V>() as u32,
            64,
            0,
        );
        let data = MapData::create(definition, name, None).expect("the map is created");
        data.pin(dir.join(name)).expect("the map is pinned");
        let map = match map_type {
            BPF_MAP_TYPE_LRU_HASH => Map::LruHashMap(data),
            _ => Map::HashMap(data),
        };
        HashMap::try_from(map).expect("a hash map")
    }

    /// A layout with the service maps (empty: the reverse-NAT entries
    /// carry no ids) and the IPv6 reverse-NAT map.
    fn layout(dir: &Path) -> HashMap<MapData, SockRevNatKey6, SockRevNatValue6> {
        pinned::<ServiceKey, ServiceValue>(dir, map_names::SERVICES, BPF_MAP_TYPE_HASH);
        pinned::<BackendId, Backend>(dir, map_names::BACKENDS, BPF_MAP_TYPE_HASH);
        pinned(dir, map_names::SOCK_REV_NAT6, BPF_MAP_TYPE_LRU_HASH)
    }

    fn address(text: &str) -> [u32; 4] {
        ipv6_words(
            text.parse::<std::net::Ipv6Addr>()
                .expect("an address")
                .octets(),
        )
    }

    #[test]
    fn ipv6_sockets_keep_their_reverse_nat_across_a_layout_switch_over() {
        let layouts = Layouts::new();
        let (old_dir, new_dir) = (layouts.dir("old"), layouts.dir("new"));
        let mut old = layout(&old_dir);
        let mut new = layout(&new_dir);
        let socket = |cookie| SockRevNatKey6 {
            cookie,
            address: address("fd00:10:244:1::2"),
            port: 8080u16.to_be(),
            pad: 0,
            pad2: 0,
        };
        let frontend = |last: &str| SockRevNatValue6 {
            address: address(&format!("fd00:10:96::{last}")),
            port: 80u16.to_be(),
            pad: 0,
        };
        old.insert(socket(1), frontend("a"), 0).unwrap();
        old.insert(socket(2), frontend("a"), 0).unwrap();

        carry_flow_state(&old_dir, &new_dir, Pass::Before);
        assert_eq!(new.get(&socket(1), 0).unwrap(), frontend("a"));
        assert_eq!(new.get(&socket(2), 0).unwrap(), frontend("a"));

        // After the swap, what the new programs wrote since is newer.
        new.insert(socket(2), frontend("b"), 0).unwrap();
        old.insert(socket(3), frontend("a"), 0).unwrap();
        carry_flow_state(&old_dir, &new_dir, Pass::After);
        assert_eq!(new.get(&socket(2), 0).unwrap(), frontend("b"));
        assert_eq!(new.get(&socket(3), 0).unwrap(), frontend("a"));
    }
}
