//! Writing many objects to etcd fast: batched transactions (etcd's default
//! limit is 128 operations each), several in flight. `etcdctl put` per key
//! would take minutes for 100 000 Services.

use anyhow::{Context, Result};
use etcd_client::{Client, KvClient, Txn, TxnOp};
use tokio::{runtime::Runtime, task::JoinSet};

/// etcd's default `--max-txn-ops`.
const OPS_PER_TXN: usize = 128;
const TXNS_IN_FLIGHT: usize = 8;

pub struct EtcdBulk<'rt> {
    runtime: &'rt Runtime,
    kv: KvClient,
}

impl<'rt> EtcdBulk<'rt> {
    pub fn connect(runtime: &'rt Runtime, endpoint: &str) -> Result<Self> {
        let client = runtime
            .block_on(Client::connect([endpoint], None))
            .with_context(|| format!("connecting to etcd at {endpoint}"))?;
        Ok(Self {
            runtime,
            kv: client.kv_client(),
        })
    }

    /// Puts every (key, value); returns how many.
    pub fn put_all(&self, objects: impl IntoIterator<Item = (String, String)>) -> Result<usize> {
        self.runtime.block_on(async {
            let mut in_flight = JoinSet::new();
            let mut batch = Vec::with_capacity(OPS_PER_TXN);
            let mut written = 0;
            let mut objects = objects.into_iter().peekable();
            while objects.peek().is_some() {
                batch.extend(objects.by_ref().take(OPS_PER_TXN));
                written += batch.len();
                let ops: Vec<TxnOp> = batch
                    .drain(..)
                    .map(|(key, value)| TxnOp::put(key, value, None))
                    .collect();
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
        })
    }

    pub fn put(&self, key: String, value: String) -> Result<()> {
        self.put_all([(key, value)]).map(drop)
    }
}

type TxnResult = Result<etcd_client::TxnResponse, etcd_client::Error>;

async fn finish_one(in_flight: &mut JoinSet<TxnResult>) -> Result<()> {
    if let Some(joined) = in_flight.join_next().await {
        joined
            .context("an etcd write task panicked")?
            .context("an etcd transaction failed")?;
    }
    Ok(())
}
