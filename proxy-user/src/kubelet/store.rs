//! The agent's writes to etcd: objects as the API server stores them
//! (Kubernetes JSON, no `resourceVersion`: that is the key's mod_revision),
//! each write a compare-and-swap on the revision it was read at, so the
//! agent never overwrites a change it has not seen.
use serde_json::Value;
use skiff_etcd::kv::{EtcdError, Kv, Written as Outcome};
use skiff_etcd::list_watch::LIST_PAGE_SIZE;
pub use skiff_etcd::new_uid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{key}: {cause}")]
    Etcd { key: String, cause: EtcdError },
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

impl From<Outcome> for Written {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Done { .. } => Written::Done,
            Outcome::Conflict | Outcome::Missing => Written::Conflict,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    kv: Kv,
}

impl Store {
    pub fn new(kv: Kv) -> Self {
        Self { kv }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Stored>, StoreError> {
        let Some(entry) = self.kv.get(key).await.map_err(etcd(key))? else {
            return Ok(None);
        };
        let object = serde_json::from_slice(&entry.value).map_err(|cause| StoreError::Decode {
            key: key.to_owned(),
            cause,
        })?;
        Ok(Some(Stored {
            object,
            mod_revision: entry.mod_revision,
        }))
    }

    /// Every object under `prefix` that decodes; the others are skipped,
    /// as one bad value must not hide the rest.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Value>, StoreError> {
        let page = self
            .kv
            .list(prefix, LIST_PAGE_SIZE)
            .await
            .map_err(etcd(prefix))?;
        Ok(page
            .entries
            .iter()
            .filter_map(|entry| serde_json::from_slice(&entry.value).ok())
            .collect())
    }

    /// Writes `object` at `key` only if the key does not exist.
    pub async fn create(&self, key: &str, object: &Value) -> Result<Written, StoreError> {
        let outcome = self.kv.create(key, object.to_string()).await;
        Ok(outcome.map_err(etcd(key))?.into())
    }

    /// Writes `object` at `key` only if the key is still at `mod_revision`.
    pub async fn update(
        &self,
        key: &str,
        object: &Value,
        mod_revision: i64,
    ) -> Result<Written, StoreError> {
        let outcome = self.kv.update(key, object.to_string(), mod_revision).await;
        Ok(outcome.map_err(etcd(key))?.into())
    }

    /// Deletes `key` only if it is still at `mod_revision`.
    pub async fn delete(&self, key: &str, mod_revision: i64) -> Result<Written, StoreError> {
        let outcome = self.kv.delete(key, mod_revision).await;
        Ok(outcome.map_err(etcd(key))?.into())
    }
}

fn etcd(key: &str) -> impl FnOnce(EtcdError) -> StoreError {
    let key = key.to_owned();
    move |cause| StoreError::Etcd { key, cause }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(format_seconds(0), "1970-01-01T00:00:00Z");
        let micro = now_rfc3339_micro();
        assert_eq!(micro.len(), "2026-11-23T22:00:00.123456Z".len(), "{micro}");
        assert!(micro.ends_with('Z'));
    }
}
