//! Compaction every interval, to the revision seen one interval ago, then
//! defragmentation of the members whose database is mostly free pages.

use std::time::Duration;

use skiff_etcd::kv::{EtcdError, Kv};
use skiff_etcd::maintenance::{Round, Turn, compact, database_size, defragment, take_turn};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

/// When a member is defragmented: its file holds at least this many free
/// bytes, and at least this fraction of it is free. A compaction frees
/// pages inside the file; only a defragmentation gives them back (and it
/// blocks the member meanwhile, so not for a little).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DefragPolicy {
    pub min_free_bytes: u64,
    pub min_free_fraction: f64,
}

impl Default for DefragPolicy {
    fn default() -> Self {
        Self {
            min_free_bytes: 100 << 20,
            min_free_fraction: 0.5,
        }
    }
}

impl DefragPolicy {
    fn is_fragmented(&self, db_size: i64, free: i64) -> bool {
        let free = u64::try_from(free).unwrap_or_default();
        let db_size = u64::try_from(db_size).unwrap_or_default();
        free >= self.min_free_bytes
            && db_size > 0
            && free as f64 >= self.min_free_fraction * db_size as f64
    }
}

/// Takes a compaction round every `interval` (the first one interval after
/// start, as kube-apiserver); after a round it won, defragments.
pub async fn run(kv: Kv, endpoints: Vec<String>, interval: Duration, defrag: DefragPolicy) {
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut round = Round::default();
    loop {
        ticks.tick().await;
        let turn = match take_turn(&kv, round).await {
            Ok((next, turn)) => {
                round = next;
                turn
            }
            Err(error) => {
                warn!(%error, "etcd compaction round failed");
                continue;
            }
        };
        let Turn::Won {
            compact_to: Some(revision),
        } = turn
        else {
            debug!(?turn, "etcd compaction round: nothing to compact here");
            continue;
        };
        match compact(&kv, revision).await {
            Ok(()) => info!(revision, "compacted etcd's history"),
            // Someone compacted further already (etcdctl, an operator).
            Err(EtcdError::Compacted { .. }) => {
                debug!(revision, "etcd's history was already compacted past it")
            }
            Err(error) => {
                warn!(revision, %error, "compacting etcd failed");
                continue;
            }
        }
        defragment_fragmented(&endpoints, defrag).await;
    }
}

/// Defragments each fragmented member in turn: a member serves nothing
/// while it is defragmented, so never two at once.
async fn defragment_fragmented(endpoints: &[String], policy: DefragPolicy) {
    for endpoint in endpoints {
        let before = match database_size(endpoint).await {
            Ok(size) => size,
            Err(error) => {
                warn!(endpoint, %error, "reading etcd's database size failed");
                continue;
            }
        };
        if !policy.is_fragmented(before.db_size, before.free()) {
            debug!(
                endpoint,
                db_size = before.db_size,
                in_use = before.in_use,
                "etcd's database is not fragmented"
            );
            continue;
        }
        let started = Instant::now();
        if let Err(error) = defragment(endpoint).await {
            warn!(endpoint, %error, "defragmenting etcd failed");
            continue;
        }
        let after = database_size(endpoint).await.map(|size| size.db_size);
        info!(
            endpoint,
            db_size_before = before.db_size,
            in_use_before = before.in_use,
            db_size_after = ?after.ok(),
            took_ms = started.elapsed().as_millis() as u64,
            "defragmented etcd"
        );
    }
}

#[cfg(test)]
mod tests {
    use skiff_etcd::kv::Written;

    use super::*;
    use crate::test_support::Etcd;

    #[tokio::test]
    async fn a_fragmented_member_is_defragmented_and_shrinks() {
        let etcd = Etcd::start();
        let kv = etcd.store().await.client();
        // 16 MB of history on one key, then compacted away: free pages.
        let value = vec![b'x'; 8 << 10];
        let mut revision = 0;
        for _ in 0..2000 {
            let written = if revision == 0 {
                kv.create("/registry/pods/default/big", value.clone()).await
            } else {
                kv.update("/registry/pods/default/big", value.clone(), revision)
                    .await
            };
            let Written::Done { revision: now } = written.unwrap() else {
                panic!("the only writer wins")
            };
            revision = now;
        }
        compact(&kv, revision).await.unwrap();
        let endpoints = [etcd.url.clone()];
        // etcd frees the compacted pages in the background.
        let deadline = Instant::now() + Duration::from_secs(20);
        let before = loop {
            let size = database_size(&endpoints[0]).await.unwrap();
            if size.free() > size.db_size / 2 {
                break size;
            }
            assert!(
                Instant::now() < deadline,
                "compaction freed nothing: {size:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };

        let strict = DefragPolicy {
            min_free_bytes: u64::try_from(before.db_size).unwrap(),
            min_free_fraction: 0.5,
        };
        defragment_fragmented(&endpoints, strict).await;
        assert_eq!(
            database_size(&endpoints[0]).await.unwrap().db_size,
            before.db_size,
            "not fragmented enough: left alone"
        );

        let policy = DefragPolicy {
            min_free_bytes: 1 << 20,
            min_free_fraction: 0.5,
        };
        assert!(
            policy.is_fragmented(before.db_size, before.free()),
            "{before:?}"
        );
        defragment_fragmented(&endpoints, policy).await;
        let after = database_size(&endpoints[0]).await.unwrap();
        assert!(
            after.db_size < before.db_size / 2,
            "{before:?} -> {after:?}"
        );
    }

    #[test]
    fn fragmented_means_enough_free_bytes_and_a_large_share_free() {
        let policy = DefragPolicy {
            min_free_bytes: 100,
            min_free_fraction: 0.5,
        };
        assert!(policy.is_fragmented(300, 200));
        assert!(!policy.is_fragmented(300, 99), "too few bytes");
        assert!(!policy.is_fragmented(1000, 400), "too small a share");
        assert!(!policy.is_fragmented(0, 0));
    }
}
