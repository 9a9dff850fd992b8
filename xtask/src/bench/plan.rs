//! How long and how big: the full run (about 17 minutes on a quiet
//! two-core machine) and `--quick` (under three, for smoke tests).

use std::time::Duration;

pub struct Plan {
    /// Interleaved rounds of every datapath figure; medians are reported.
    pub rounds: usize,
    /// Each variant's time in one round of a datapath figure.
    pub figure_time: Duration,
    /// Services in each step of the scale sweep.
    pub scales: &'static [usize],
    /// Rounds of (direct, variant) connection rate at each scale.
    pub scale_rounds: usize,
    pub scale_connect_time: Duration,
    /// Single-Service changes timed at each scale.
    pub changes: usize,
    /// How long an agent sync, iptables-restore or nft -f may take before
    /// the figure is reported as timed out.
    pub sync_timeout: Duration,
    /// The same for the kube-proxy baselines in the scale sweep: kube-proxy
    /// 1.20 needs about 190 s for its first sync of 10 000 Services here.
    pub baseline_sync_timeout: Duration,
    /// Pods started one after another for the pod start latency.
    pub pod_starts: usize,
    /// ClusterIP Services whose names the DNS figures query.
    pub dns_services: usize,
    /// Simulated agents' etcd watches, and the changes timed through them.
    pub fanout_watchers: usize,
    pub fanout_changes: usize,
    /// Leaders killed for the leader kill → controllers acting figure.
    pub leader_kills: usize,
    /// Services in etcd when snapshots are saved and restored, and rounds.
    pub snapshot_services: usize,
    pub snapshot_rounds: usize,
}

impl Plan {
    pub fn new(quick: bool) -> Self {
        if quick {
            Plan {
                rounds: 2,
                figure_time: Duration::from_secs(1),
                scales: &[1, 1000],
                scale_rounds: 1,
                scale_connect_time: Duration::from_secs(1),
                changes: 20,
                sync_timeout: Duration::from_secs(60),
                baseline_sync_timeout: Duration::from_secs(60),
                pod_starts: 5,
                dns_services: 100,
                fanout_watchers: 500,
                fanout_changes: 10,
                leader_kills: 2,
                snapshot_services: 1000,
                snapshot_rounds: 1,
            }
        } else {
            Plan {
                // Seven rounds: single 3 s samples on these shared machines
                // spread ±10 %, more than the 1-3 % the targets ask about.
                rounds: 7,
                figure_time: Duration::from_secs(3),
                scales: &[1, 1000, 10_000, 100_000],
                scale_rounds: 3,
                scale_connect_time: Duration::from_secs(2),
                changes: 200,
                sync_timeout: Duration::from_secs(120),
                baseline_sync_timeout: Duration::from_secs(400),
                pod_starts: 20,
                dns_services: 1000,
                fanout_watchers: 5000,
                fanout_changes: 100,
                leader_kills: 5,
                snapshot_services: 10_000,
                snapshot_rounds: 5,
            }
        }
    }
}
