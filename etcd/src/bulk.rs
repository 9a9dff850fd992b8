//! Writing many keys to etcd fast: batched transactions (etcd's default
//! limit is 128 operations each), several in flight. `etcdctl put` per key
//! would take minutes for 100 000 Services.

use etcd_client::{Client, KvClient, Txn, TxnOp, TxnResponse};
use tokio::task::JoinSet;

/// etcd's default `--max-txn-ops`.
const OPS_PER_TXN: usize = 128;
const TXNS_IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("connecting to etcd at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: etcd_client::Error,
    },
    #[error("an etcd transaction failed: {0}")]
    Txn(#[from] etcd_client::Error),
    #[error("an etcd write task panicked")]
    Panicked,
}

pub struct BulkWriter {
    kv: KvClient,
}

impl BulkWriter {
    pub async fn connect(endpoint: &str) -> Result<Self, BulkError> {
        let client =
            Client::connect([endpoint], None)
                .await
                .map_err(|source| BulkError::Connect {
                    endpoint: endpoint.to_owned(),
                    source,
                })?;
        Ok(Self {
            kv: client.kv_client(),
        })
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
            let ops: Vec<TxnOp> = objects
                .by_ref()
                .take(OPS_PER_TXN)
                .map(|(key, value)| TxnOp::put(key, value, None))
                .collect();
            written += ops.len();
            let mut kv = self.kv.clone();
            in_flight.spawn(async move { kv.txn(Txn::new().and_then(ops)).await });
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

async fn finish_one(
    in_flight: &mut JoinSet<Result<TxnResponse, etcd_client::Error>>,
) -> Result<(), BulkError> {
    if let Some(joined) = in_flight.join_next().await {
        joined.map_err(|_| BulkError::Panicked)??;
    }
    Ok(())
}
