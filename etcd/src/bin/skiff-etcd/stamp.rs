//! The probe Service `watch-fanout` writes: its annotation carries the
//! wall-clock time of the write, which every watcher process (on the same
//! machine, so on the same clock) subtracts from its arrival time.

use std::time::{SystemTime, UNIX_EPOCH};

use skiff_etcd::keys::{SERVICES, object_key};

pub const SENT_ANNOTATION: &str = "bench.skiff.dev/sent-unix-nanos";
const NAMESPACE: &str = "default";
const NAME: &str = "watch-fanout-probe";

pub fn now_unix_nanos() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX)
}

/// The probe's etcd key.
pub fn probe_key() -> String {
    object_key(SERVICES, Some(NAMESPACE), NAME)
}

/// The probe Service as the API server stores it, stamped `sent_unix_nanos`.
pub fn probe_service(sent_unix_nanos: u64) -> String {
    serde_json::json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "annotations": { SENT_ANNOTATION: sent_unix_nanos.to_string() },
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "10.96.200.1",
            "clusterIPs": ["10.96.200.1"],
            "ports": [{ "name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080 }],
        },
    })
    .to_string()
}
