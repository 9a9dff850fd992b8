//! What the kubelet reads straight from etcd, where the agent already
//! watches the cluster's Services: the Services of a pod's namespace for
//! its containers' environment. It writes nothing there: its writes, and
//! its reads of Secrets, ConfigMaps and claims, go through the API server
//! as the node (`crate::apiserver`). Also the times the kubelet stamps.
use serde_json::Value;
use skiff_etcd::kv::{EtcdError, Kv};
use skiff_etcd::list_watch::LIST_PAGE_SIZE;

#[derive(Debug, thiserror::Error)]
#[error("{key}: {cause}")]
pub struct StoreError {
    key: String,
    cause: EtcdError,
}

/// etcd, read only.
#[derive(Clone)]
pub struct Store {
    kv: Kv,
}

impl Store {
    pub fn new(kv: Kv) -> Self {
        Self { kv }
    }

    /// Every object under `prefix` that decodes; the others are skipped,
    /// as one bad value must not hide the rest.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Value>, StoreError> {
        let page = self
            .kv
            .list(prefix, LIST_PAGE_SIZE)
            .await
            .map_err(|cause| StoreError {
                key: prefix.to_owned(),
                cause,
            })?;
        Ok(page
            .entries
            .iter()
            .filter_map(|entry| serde_json::from_slice(&entry.value).ok())
            .collect())
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
