//! Core v1 Events about objects, as `kubectl describe` shows them.

use serde_json::{Value, json};
use tracing::debug;

use super::kind::Kind;
use super::{Context, meta};

/// Records `reason`/`message` about `object` (of `kind`, e.g. `Pod`) from
/// `component` of this instance. Best effort: an event that cannot be
/// written is logged.
pub async fn record(
    context: &Context,
    object: &Value,
    kind: &str,
    event_type: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let namespace = match meta::namespace(object) {
        "" => "default",
        namespace => namespace,
    };
    let now = meta::now();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        // kube's own naming: the object's name and a unique hex suffix.
        "metadata": { "name": format!("{}.{nanos:x}", meta::name(object)), "namespace": namespace },
        "involvedObject": {
            "apiVersion": object["apiVersion"],
            "kind": kind,
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "uid": object["metadata"]["uid"],
            "resourceVersion": object["metadata"]["resourceVersion"],
        },
        "reason": reason,
        "message": message,
        "type": event_type,
        "source": { "component": component },
        "reportingComponent": component,
        "reportingInstance": context.identity,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    if let Err(error) = context
        .client
        .create(Kind::Event, Some(namespace), &event)
        .await
    {
        debug!(%error, reason, "event not recorded");
    }
}
