//! The time as the API writes it into objects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

/// The current time as Kubernetes serializes `metav1.Time` (RFC 3339,
/// seconds).
pub fn now() -> Value {
    seconds_from_now(0)
}

/// The time `seconds` from now, as [`now`] writes it.
pub fn seconds_from_now(seconds: i64) -> Value {
    let time = k8s_openapi::jiff::Timestamp::from_second(unix_now().saturating_add(seconds))
        .unwrap_or(k8s_openapi::jiff::Timestamp::MAX);
    serde_json::to_value(Time(time)).expect("a time always serializes")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}
