//! The agent's writes to etcd: objects as the API server stores them
//! (Kubernetes JSON, no `resourceVersion`: that is the key's mod_revision),
//! each write a compare-and-swap on the revision it was read at, so the
//! agent never overwrites a change it has not seen.
use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("etcd {operation} of {key} failed: {cause}")]
    Etcd {
        operation: &'static str,
        key: String,
        cause: etcd_client::Error,
    },
    #[error("the value at {key} is not JSON: {cause}")]
    Decode {
        key: String,
        cause: serde_json::Error,
    },
}

/// An object read from etcd and the revision to compare against when
/// writing it back.
#[derive(Debug, Clone)]
pub struct Stored {
    pub object: Value,
    pub mod_revision: i64,
}

/// What a compare-and-swap came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Done,
    /// Someone wrote (or deleted) the key since it was read: read again.
    Conflict,
}

#[derive(Clone)]
pub struct Store {
    client: Client,
}

impl Store {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let mut kv = self.client.kv_client();
        let response = kv.get(key, None).await.map_err(etcd("get", key))?;
        let Some(entry) = response.kvs().first() else {
            return Ok(None);
        };
        let object = serde_json::from_slice(entry.value()).map_err(|cause| StoreError::Decode {
            key: key.to_owned(),
            cause,
        })?;
        Ok(Some(Stored {
            object,
            mod_revision: entry.mod_revision(),
        }))
    }

    /// Every object under `prefix` that decodes; the others are skipped,
    /// as one bad value must not hide the rest.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Value>, StoreError> {
        let mut kv = self.client.kv_client();
        let response = kv
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
            .map_err(etcd("list", prefix))?;
        Ok(response
            .kvs()
            .iter()
            .filter_map(|entry| serde_json::from_slice(entry.value()).ok())
            .collect())
    }

    /// Writes `object` at `key` only if the key does not exist.
    pub async fn create(&self, key: &str, object: &Value) -> Result<Written, StoreError> {
        self.swap(
            key,
            Compare::version(key, CompareOp::Equal, 0),
            TxnOp::put(key, object.to_string(), None),
        )
        .await
    }

    /// Writes `object` at `key` only if the key is still at `mod_revision`.
    pub async fn update(
        &self,
        key: &str,
        object: &Value,
        mod_revision: i64,
    ) -> Result<Written, StoreError> {
        self.swap(
            key,
            Compare::mod_revision(key, CompareOp::Equal, mod_revision),
            TxnOp::put(key, object.to_string(), None),
        )
        .await
    }

    /// Deletes `key` only if it is still at `mod_revision`.
    pub async fn delete(&self, key: &str, mod_revision: i64) -> Result<Written, StoreError> {
        self.swap(
            key,
            Compare::mod_revision(key, CompareOp::Equal, mod_revision),
            TxnOp::delete(key, None),
        )
        .await
    }

    async fn swap(&self, key: &str, compare: Compare, op: TxnOp) -> Result<Written, StoreError> {
        let mut kv = self.client.kv_client();
        let txn = Txn::new().when([compare]).and_then([op]);
        let response = kv.txn(txn).await.map_err(etcd("transaction", key))?;
        Ok(match response.succeeded() {
            true => Written::Done,
            false => Written::Conflict,
        })
    }
}

fn etcd(operation: &'static str, key: &str) -> impl FnOnce(etcd_client::Error) -> StoreError {
    let key = key.to_owned();
    move |cause| StoreError::Etcd {
        operation,
        key,
        cause,
    }
}

/// A client of the etcd at `endpoints`, retrying (100 ms doubling to 5 s)
/// until it answers.
pub async fn connect(endpoints: &[String]) -> Client {
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5));
        match Client::connect(endpoints, Some(options)).await {
            Ok(client) => return client,
            Err(error) => {
                tracing::warn!(?endpoints, %error, retry_in = ?delay, "connecting to etcd failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
}

/// The current time as Kubernetes writes `metav1.Time` (RFC 3339, seconds).
pub fn now_rfc3339() -> String {
    let (seconds, _) = unix_now();
    format_seconds(seconds)
}

/// The current time as Kubernetes writes `metav1.MicroTime` (RFC 3339,
/// microseconds), as in a Lease's `renewTime`.
pub fn now_rfc3339_micro() -> String {
    let (seconds, micros) = unix_now();
    let whole = format_seconds(seconds);
    format!("{}.{micros:06}Z", whole.trim_end_matches('Z'))
}

fn format_seconds(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

fn unix_now() -> (i64, u32) {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs() as i64, since.subsec_micros())
}

/// A random (version 4) UUID for `metadata.uid`, as the API server makes.
pub fn new_uid() -> String {
    let bits: u128 = rand::random();
    // The version (4) and variant (10) bits of RFC 9562.
    let bits = (bits & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        bits >> 96,
        (bits >> 80) & 0xffff,
        (bits >> 64) & 0xffff,
        (bits >> 48) & 0xffff,
        bits & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(format_seconds(0), "1970-01-01T00:00:00Z");
        let micro = now_rfc3339_micro();
        assert_eq!(micro.len(), "2026-11-23T22:00:00.123456Z".len(), "{micro}");
        assert!(micro.ends_with('Z'));
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4", "{uid}");
    }
}
