//! Writing many keys to etcd fast: batched transactions (etcd's default
//! limit is 128 operations each), several in flight. `etcdctl put` per key
//! would take minutes for 100 000 Services.

use tokio::task::JoinSet;

use crate::kv::{EtcdError, Guarded, Kv, Written};

/// etcd's default `--max-txn-ops`.
const OPS_PER_TXN: usize = 128;
const TXNS_IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("connecting to etcd at {endpoint}: {source}")]
    Connect { endpoint: String, source: EtcdError },
    #[error("an etcd transaction failed: {0}")]
    Txn(#[from] EtcdError),
    #[error("an etcd write task panicked")]
    Panicked,
}

pub struct BulkWriter {
    kv: Kv,
}

impl BulkWriter {
    pub async fn connect(endpoint: &str) -> Result<Self, BulkError> {
        let kv = Kv::connect(&[endpoint.to_owned()])
            .await
            .map_err(|source| BulkError::Connect {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        Ok(Self { kv })
    }

    /// Puts every (key, value); returns how many.
    pub async fn put_all(
        &self,
        objects: impl IntoIterator<Item = (String, String)>,
    ) -> Result<usize, BulkError> {
        let mut in_flight = JoinSet::new();
        let mut written = 0;
        let mut objects = objects.into_iter().peekable();
        while objects.peek().is_some() {
            // No guards: these are plain puts, batched.
            let batch =
                objects
                    .by_ref()
                    .take(OPS_PER_TXN)
                    .fold(Guarded::new(), |batch, (key, value)| {
                        written += 1;
                        batch.put(&key, value)
                    });
            let kv = self.kv.clone();
            in_flight.spawn(async move { kv.commit(batch).await });
            if in_flight.len() >= TXNS_IN_FLIGHT {
                finish_one(&mut in_flight).await?;
            }
        }
        while !in_flight.is_empty() {
            finish_one(&mut in_flight).await?;
        }
        Ok(written)
    }
}

async fn finish_one(in_flight: &mut JoinSet<Result<Written, EtcdError>>) -> Result<(), BulkError> {
    if let Some(joined) = in_flight.join_next().await {
        joined.map_err(|_| BulkError::Panicked)??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::etcd;

    #[tokio::test]
    async fn puts_every_key_across_many_transactions() {
        let (etcd, kv) = etcd().await;
        let writer = BulkWriter::connect(&etcd.local_endpoint()).await.unwrap();
        let count = OPS_PER_TXN * TXNS_IN_FLIGHT * 2 + 3;
        let objects = (0..count).map(|i| (format!("/bulk/{i:05}"), format!("v{i}")));
        assert_eq!(writer.put_all(objects).await.unwrap(), count);
        assert_eq!(kv.keys("/bulk/").await.unwrap().len(), count);
        let last = kv
            .get(&format!("/bulk/{:05}", count - 1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(last.value, format!("v{}", count - 1).into_bytes());
        assert_eq!(writer.put_all(Vec::new()).await.unwrap(), 0);
    }
}
