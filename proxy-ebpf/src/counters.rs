//! The counters the agent reports: drops by reason, and per-frontend
//! connections, packets and refusals.
use aya_ebpf::bindings::BPF_NOEXIST;
use proxy_common::FrontendStats;

use crate::maps::{DROPS, FRONTEND_STATS};

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
