//! Lookups and counters that the socket hooks and the per-packet NAT share.
use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_ns};
use proxy_common::{
    AffinityKey, AffinityValue, BackendId, BackendSlotKey, FrontendStats, ServiceValue,
};

use crate::maps::{AFFINITY, BACKEND_SLOTS, DROPS, FRONTEND_STATS};

/// The backend id in one slot of a frontend.
#[inline(always)]
pub fn slot_backend(service_id: u32, slot: u32) -> Option<BackendId> {
    let key = BackendSlotKey { service_id, slot };
    // SAFETY: read and copied.
    (unsafe { BACKEND_SLOTS.get(&key) }).copied()
}

#[inline(always)]
pub fn count_drop(reason: u32) {
    if let Some(count) = DROPS.get_ptr_mut(reason) {
        // SAFETY: a per-CPU slot: no other program writes it concurrently.
        unsafe { *count += 1 };
    }
}

#[inline(always)]
pub fn count_frontend(service_id: u32, update: impl Fn(&mut FrontendStats)) {
    match FRONTEND_STATS.get_ptr_mut(&service_id) {
        // SAFETY: a per-CPU value: no other program writes it concurrently.
        Some(stats) => update(unsafe { &mut *stats }),
        None => {
            let mut stats = FrontendStats::default();
            update(&mut stats);
            // Fails only if another CPU created the entry first (this
            // count is then lost) or the map is full.
            let _ = FRONTEND_STATS.insert(&service_id, &stats, u64::from(BPF_NOEXIST));
        }
    }
}

/// The backend of a new connection or flow to an affinity frontend: the
/// client's sticky backend while its entry holds (not expired, and its
/// slot still holds that backend), else the one in the slot `pick` chooses,
/// which the client then sticks to.
#[inline(always)]
pub fn with_affinity(
    service: &ServiceValue,
    client: u64,
    pick: impl FnOnce() -> Option<u32>,
) -> Option<BackendId> {
    // SAFETY: a helper call without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let key = AffinityKey {
        client,
        service_id: service.id,
        pad: 0,
    };
    let timeout_ns = u64::from(service.affinity_timeout) * 1_000_000_000;
    // SAFETY: read and copied.
    let sticky = (unsafe { AFFINITY.get(&key) }).copied().filter(|entry| {
        now.wrapping_sub(entry.last_used_ns) <= timeout_ns
            && entry.slot < service.backend_count
            && slot_backend(service.id, entry.slot) == Some(entry.backend_id)
    });
    let (slot, backend_id) = match sticky {
        Some(entry) => (entry.slot, entry.backend_id),
        None => {
            let slot = pick()?;
            (slot, slot_backend(service.id, slot)?)
        }
    };
    let entry = AffinityValue {
        last_used_ns: now,
        backend_id,
        slot,
    };
    // An LRU insert only fails under memory pressure; the client just loses
    // its stickiness.
    let _ = AFFINITY.insert(&key, &entry, 0);
    Some(backend_id)
}
