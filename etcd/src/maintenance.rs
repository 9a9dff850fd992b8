//! etcd's housekeeping through its own APIs: compaction rounds that
//! several API servers share as kube-apiserver's compactor does, and each
//! member's database size and defragmentation, one member at a time.

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use crate::keys::COMPACT_REV;
use crate::kv::{EtcdError, Kv};

/// Where one API server stands in the compaction rounds: the version of
/// [`COMPACT_REV`] it last saw, and etcd's revision when it saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub version: i64,
    pub revision: i64,
}

/// Who takes one compaction round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Another API server took this round (and compacts).
    Lost,
    /// This server took the round: it is to compact the history below this
    /// revision ([`compact`]), or nothing in its first round (it saw no
    /// earlier revision).
    Won { compact_to: Option<i64> },
}

/// One round of kube-apiserver's compactor. The server whose `last`
/// version of [`COMPACT_REV`] is still current bumps it (a transaction on
/// its version, so one server per round wins) and is to compact to the
/// revision it saw one round ago: the history kept always spans at least
/// one interval. Every server, winner or not, comes out with the next
/// round's `Round`.
pub async fn take_turn(kv: &Kv, last: Round) -> Result<(Round, Turn), EtcdError> {
    let mut client = kv.client();
    let txn = Txn::new()
        .when([Compare::version(
            COMPACT_REV,
            CompareOp::Equal,
            last.version,
        )])
        .and_then([TxnOp::put(COMPACT_REV, last.revision.to_string(), None)])
        .or_else([TxnOp::get(COMPACT_REV, None)]);
    let response = client.txn(txn).await.map_err(EtcdError::of("txn", 0))?;
    let revision = response
        .header()
        .ok_or(EtcdError::MissingHeader { operation: "txn" })?
        .revision();
    if !response.succeeded() {
        let version = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.version()),
                _ => None,
            })
            .unwrap_or_default();
        return Ok((Round { version, revision }, Turn::Lost));
    }
    let next = Round {
        version: last.version + 1,
        revision,
    };
    let compact_to = (last.revision > 0).then_some(last.revision);
    Ok((next, Turn::Won { compact_to }))
}

/// Drops the history below `revision` (the keys' values as they are at
/// `revision` and later stay). Compacting to a revision already compacted
/// is `EtcdError::Compacted`.
pub async fn compact(kv: &Kv, revision: i64) -> Result<(), EtcdError> {
    kv.client()
        .compact(revision, None)
        .await
        .map_err(EtcdError::of("compact", revision))?;
    Ok(())
}

/// One member's backend database: what its file takes, and how much of
/// that holds data (the rest is free pages that only a defragmentation
/// gives back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseSize {
    pub db_size: i64,
    pub in_use: i64,
}

impl DatabaseSize {
    /// Bytes of the file that hold no data.
    pub fn free(&self) -> i64 {
        (self.db_size - self.in_use).max(0)
    }
}

/// The database size of the member at `endpoint` (its own status, not the
/// cluster's).
pub async fn database_size(endpoint: &str) -> Result<DatabaseSize, EtcdError> {
    let mut client = Kv::connect(&[endpoint.to_owned()]).await?.client();
    let status = client.status().await.map_err(EtcdError::of("status", 0))?;
    Ok(DatabaseSize {
        db_size: status.db_size(),
        in_use: status.raft_used_db_size(),
    })
}

/// Defragments the member at `endpoint`. It serves nothing meanwhile, so
/// callers take one member at a time.
pub async fn defragment(endpoint: &str) -> Result<(), EtcdError> {
    let mut client = Kv::connect(&[endpoint.to_owned()]).await?.client();
    client
        .defragment()
        .await
        .map_err(EtcdError::of("defragment", 0))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KeyRange;
    use crate::testing::etcd;

    #[tokio::test]
    async fn one_server_per_round_compacts_to_the_revision_of_the_round_before() {
        let (_etcd, kv) = etcd().await;
        let key = "/registry/pods/default/a";
        kv.create(key, "v1").await.unwrap();

        // Two servers start together: one takes the first round, with nothing
        // to compact yet; the other loses it.
        let (a, turn_a) = take_turn(&kv, Round::default()).await.unwrap();
        assert_eq!(turn_a, Turn::Won { compact_to: None });
        let (b, turn_b) = take_turn(&kv, Round::default()).await.unwrap();
        assert_eq!(turn_b, Turn::Lost);
        assert_eq!(a.version, b.version, "the loser learns the round");

        let entry = kv.get(key).await.unwrap().unwrap();
        kv.update(key, "v2", entry.mod_revision).await.unwrap();

        // Next round: the loser of the last one now holds the current version
        // too; whoever goes first wins and compacts to what it saw then.
        let (_, turn_b) = take_turn(&kv, b).await.unwrap();
        assert_eq!(
            turn_b,
            Turn::Won {
                compact_to: Some(b.revision)
            }
        );
        let (_, turn_a) = take_turn(&kv, a).await.unwrap();
        assert_eq!(turn_a, Turn::Lost, "one compaction per round");
        compact(&kv, b.revision).await.unwrap();
        let below = kv
            .page(
                &KeyRange::prefix("/registry/pods/"),
                entry.mod_revision,
                None,
            )
            .await;
        assert!(
            matches!(below, Err(EtcdError::Compacted { .. })),
            "history below the round's revision is gone: {below:?}"
        );
        assert!(matches!(
            compact(&kv, b.revision).await,
            Err(EtcdError::Compacted { .. })
        ));
    }
}
