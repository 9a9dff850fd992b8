//! Carries per-flow state from the maps of an older layout version into
//! this agent's maps during a switch-over, so that established flows keep
//! their backends (and NATed flows their ports) across the upgrade.
//!
//! Only maps whose key and value sizes are unchanged are copied; for the
//! others the state is rebuilt as flows come (a NodePort flow to a remote
//! backend then breaks, which is what the versioned layout exists to make
//! rare). The service maps are never copied: the agent programs them from
//! the cluster's state before the switch.
use std::path::Path;

use aya::{
    Pod,
    maps::{HashMap, Map, MapData},
};
use proxy_common::{
    AffinityKey, AffinityValue, CtKey, CtValue, SockRevNatKey, SockRevNatValue, map_names,
};
use tracing::{info, warn};

pub fn carry_flow_state(old_dir: &Path, new_dir: &Path) {
    copy::<CtKey, CtValue>(old_dir, new_dir, map_names::CONNTRACK);
    copy::<SockRevNatKey, SockRevNatValue>(old_dir, new_dir, map_names::SOCK_REV_NAT);
    copy::<AffinityKey, AffinityValue>(old_dir, new_dir, map_names::AFFINITY);
}

fn copy<K: Pod, V: Pod>(old_dir: &Path, new_dir: &Path, name: &'static str) {
    let open = |dir: &Path| -> Option<HashMap<MapData, K, V>> {
        let data = MapData::from_pin(dir.join(name)).ok()?;
        // A size mismatch is refused here: such state is not carried.
        HashMap::try_from(Map::LruHashMap(data)).ok()
    };
    let (Some(old), Some(mut new)) = (open(old_dir), open(new_dir)) else {
        info!(map = name, from = %old_dir.display(), "per-flow state not carried over (missing, or its layout changed)");
        return;
    };
    let mut copied = 0usize;
    for entry in old.iter() {
        let Ok((key, value)) = entry else { break };
        match new.insert(key, value, 0) {
            Ok(()) => copied += 1,
            Err(error) => {
                warn!(map = name, %error, "carrying per-flow state over stopped early");
                break;
            }
        }
    }
    info!(map = name, entries = copied, from = %old_dir.display(), "per-flow state carried over");
}
