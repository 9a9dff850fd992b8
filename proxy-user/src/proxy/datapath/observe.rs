//! Read-only views of a node's pinned maps, for `skiff-agent status` and
//! `/metrics`. They read the kernel's state, not the agent's memory, so
//! they work whether or not an agent is running.
use std::{collections::HashMap as StdHashMap, fmt::Write as _, path::Path};

use aya::maps::{HashMap, Map, MapData, PerCpuArray, PerCpuHashMap};
use proxy_common::{
    Backend, Backend6, BackendId, BackendSlotKey, FrontendStats, SERVICE_FLAG_AFFINITY,
    SERVICE_FLAG_EXTERNAL, SERVICE_FLAG_LOCAL_ONLY, SERVICE_FLAG_SOURCE_RANGES, ServiceKey,
    ServiceKey6, ServiceValue, drop_reason, map_names,
};

use super::{
    error::DatapathError,
    keys::{BackendKey, FrontendKey},
    loader::maps_dir,
    programmed::MapContents,
    tables::{Ipv6Maps, read_contents},
};

pub struct Observer {
    services: HashMap<MapData, ServiceKey, ServiceValue>,
    backends: HashMap<MapData, BackendId, Backend>,
    /// `None` when the pins predate IPv6: an older agent still runs, or
    /// ran last, on this node.
    ipv6: Option<Ipv6Pins>,
    slots: HashMap<MapData, BackendSlotKey, BackendId>,
    stats: PerCpuHashMap<MapData, u32, FrontendStats>,
    drops: PerCpuArray<MapData, u64>,
}

struct Ipv6Pins {
    services6: HashMap<MapData, ServiceKey6, ServiceValue>,
    backends6: HashMap<MapData, BackendId, Backend6>,
}

/// One programmed frontend as the kernel has it.
#[derive(Debug)]
pub struct FrontendView {
    pub key: FrontendKey,
    pub value: ServiceValue,
    /// By slot.
    pub backends: Vec<BackendKey>,
    pub stats: FrontendStats,
}

fn open_pinned(
    bpffs: &Path,
    name: &'static str,
    wrap: fn(MapData) -> Map,
) -> Result<Map, DatapathError> {
    let path = maps_dir(bpffs).join(name);
    MapData::from_pin(&path)
        .map(wrap)
        .map_err(|cause| DatapathError::Map { name, cause })
}

fn open_hash_map<K: aya::Pod, V: aya::Pod>(
    bpffs: &Path,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, DatapathError> {
    open_pinned(bpffs, name, Map::HashMap)?
        .try_into()
        .map_err(|cause| DatapathError::Map { name, cause })
}

impl Observer {
    /// Opens the maps an agent pinned under `bpffs`; the IPv6 ones only if
    /// both are pinned.
    pub fn open(bpffs: &Path) -> Result<Self, DatapathError> {
        let map_error = |name| move |cause| DatapathError::Map { name, cause };
        let pinned = |name| maps_dir(bpffs).join(name).exists();
        let ipv6 = match pinned(map_names::SERVICES6) && pinned(map_names::BACKENDS6) {
            true => Some(Ipv6Pins {
                services6: open_hash_map(bpffs, map_names::SERVICES6)?,
                backends6: open_hash_map(bpffs, map_names::BACKENDS6)?,
            }),
            false => None,
        };
        Ok(Self {
            services: open_hash_map(bpffs, map_names::SERVICES)?,
            backends: open_hash_map(bpffs, map_names::BACKENDS)?,
            ipv6,
            slots: open_hash_map(bpffs, map_names::BACKEND_SLOTS)?,
            stats: open_pinned(bpffs, map_names::FRONTEND_STATS, Map::PerCpuHashMap)?
                .try_into()
                .map_err(map_error(map_names::FRONTEND_STATS))?,
            drops: open_pinned(bpffs, map_names::DROPS, Map::PerCpuArray)?
                .try_into()
                .map_err(map_error(map_names::DROPS))?,
        })
    }

    /// Every frontend with its backends and counters, ordered by address.
    pub fn frontends(&self) -> Result<Vec<FrontendView>, DatapathError> {
        let MapContents {
            services,
            slots,
            backends,
            ..
        } = read_contents(
            &self.services,
            &self.backends,
            self.ipv6.as_ref().map(|pins| Ipv6Maps {
                services6: &pins.services6,
                backends6: &pins.backends6,
            }),
            &self.slots,
        )?;
        let slots: StdHashMap<BackendSlotKey, BackendId> = slots.into_iter().collect();
        let backends: StdHashMap<BackendId, BackendKey> = backends.into_iter().collect();
        let stats = self.frontend_stats()?;
        let mut views: Vec<FrontendView> = services
            .into_iter()
            .map(|(key, value)| FrontendView {
                key,
                value,
                backends: (0..value.backend_count)
                    .filter_map(|slot| {
                        let id = slots.get(&BackendSlotKey {
                            service_id: value.id,
                            slot,
                        })?;
                        backends.get(id).copied()
                    })
                    .collect(),
                stats: stats.get(&value.id).copied().unwrap_or_default(),
            })
            .collect();
        views.sort_by_key(|view| view.key.sort_key());
        Ok(views)
    }

    /// Each frontend's counters, summed over CPUs, by frontend id.
    fn frontend_stats(&self) -> Result<StdHashMap<u32, FrontendStats>, DatapathError> {
        let map_error = |cause| DatapathError::Map {
            name: map_names::FRONTEND_STATS,
            cause,
        };
        let mut totals = StdHashMap::new();
        for entry in self.stats.iter() {
            let (id, per_cpu) = entry.map_err(map_error)?;
            let total: &mut FrontendStats = totals.entry(id).or_default();
            for cpu in per_cpu.iter() {
                total.connects += cpu.connects;
                total.udp_sends += cpu.udp_sends;
                total.refused += cpu.refused;
                total.packets += cpu.packets;
                total.bytes += cpu.bytes;
            }
        }
        Ok(totals)
    }

    /// Whether the IPv6 frontend and backend maps are pinned.
    pub fn has_ipv6_maps(&self) -> bool {
        self.ipv6.is_some()
    }

    /// Failed connects and sends by `drop_reason`, summed over CPUs.
    pub fn drops(&self) -> Result<[u64; drop_reason::COUNT as usize], DatapathError> {
        let mut totals = [0; drop_reason::COUNT as usize];
        for (reason, total) in totals.iter_mut().enumerate() {
            let per_cpu =
                self.drops
                    .get(&(reason as u32), 0)
                    .map_err(|cause| DatapathError::Map {
                        name: map_names::DROPS,
                        cause,
                    })?;
            *total = per_cpu.iter().sum();
        }
        Ok(totals)
    }
}

/// `cluster`, or `external` with `+local` (externalTrafficPolicy Local) and
/// `+ranges` (loadBalancerSourceRanges).
fn kind(flags: u32) -> String {
    if flags & SERVICE_FLAG_EXTERNAL == 0 {
        return "cluster".to_owned();
    }
    let mut kind = "external".to_owned();
    if flags & SERVICE_FLAG_LOCAL_ONLY != 0 {
        kind.push_str("+local");
    }
    if flags & SERVICE_FLAG_SOURCE_RANGES != 0 {
        kind.push_str("+ranges");
    }
    kind
}

/// The `skiff-agent status` report: every frontend with its backends and
/// counters, then the drops, then whether the IPv6 maps are pinned (an
/// older agent's are not, and its node has IPv4 frontends only).
pub fn render_status(frontends: &[FrontendView], drops: &[u64], ipv6_maps: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>6} {:<14} {:>8} {:>9} {:>12} {:>10} {:>8} {:>10}",
        "FRONTEND",
        "ID",
        "KIND",
        "BACKENDS",
        "AFFINITY",
        "CONNECTIONS",
        "UDP SENDS",
        "REFUSED",
        "PACKETS"
    );
    for view in frontends {
        let affinity = if view.value.flags & SERVICE_FLAG_AFFINITY != 0 {
            format!("{}s", view.value.affinity_timeout)
        } else {
            "-".to_owned()
        };
        let _ = writeln!(
            out,
            "{:<24} {:>6} {:<14} {:>8} {:>9} {:>12} {:>10} {:>8} {:>10}",
            view.key.to_string(),
            view.value.id,
            kind(view.value.flags),
            view.backends.len(),
            affinity,
            view.stats.connects,
            view.stats.udp_sends,
            view.stats.refused,
            view.stats.packets
        );
        for backend in &view.backends {
            let _ = writeln!(out, "  -> {backend}");
        }
    }
    let drops: Vec<String> = drop_reason::NAMES
        .iter()
        .zip(drops)
        .map(|(name, count)| format!("{name}={count}"))
        .collect();
    let _ = writeln!(out, "drops: {}", drops.join(" "));
    let ipv6_maps = match ipv6_maps {
        true => "pinned",
        false => "absent",
    };
    let _ = writeln!(out, "ipv6 maps: {ipv6_maps}");
    out
}

#[cfg(test)]
mod tests {
    use proxy_common::{Backend, PROTO_UDP, ServiceKey};

    use super::*;

    #[test]
    fn the_status_report_lists_frontends_backends_counters_and_drops() {
        let view = FrontendView {
            key: FrontendKey::V4(ServiceKey {
                address: u32::from_ne_bytes([10, 96, 0, 10]),
                port: 53u16.to_be(),
                protocol: PROTO_UDP,
                pad: 0,
            }),
            value: ServiceValue {
                id: 7,
                backend_count: 1,
                flags: SERVICE_FLAG_AFFINITY,
                affinity_timeout: 30,
            },
            backends: vec![BackendKey::V4(Backend {
                address: u32::from_ne_bytes([10, 244, 1, 2]),
                port: 5353u16.to_be(),
                protocol: PROTO_UDP,
                pad: 0,
            })],
            stats: FrontendStats {
                connects: 1,
                udp_sends: 12,
                refused: 0,
                packets: 9,
                bytes: 900,
            },
        };
        let report = render_status(&[view], &[3, 0, 0], true);
        let lines: Vec<&str> = report.lines().collect();
        assert!(lines[1].starts_with("10.96.0.10:53/UDP"), "{report}");
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "10.96.0.10:53/UDP",
                "7",
                "cluster",
                "1",
                "30s",
                "1",
                "12",
                "0",
                "9"
            ]
        );
        assert_eq!(lines[2], "  -> 10.244.1.2:5353");
        assert_eq!(
            lines[3],
            "drops: no_endpoints=3 unknown_service=0 no_backend=0"
        );
        assert_eq!(lines[4], "ipv6 maps: pinned");
        let older = render_status(&[], &[0, 0, 0], false);
        assert_eq!(older.lines().last(), Some("ipv6 maps: absent"), "{older}");
    }
}
