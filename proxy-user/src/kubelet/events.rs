//! Events the kubelet records about a pod (core/v1 Events, created
//! through the API server as the node, so `kubectl describe pod` and
//! `kubectl get events` show them).
use k8s_openapi::api::core::v1::{Event, Pod};
use serde_json::json;

use crate::apiserver::{post_params, typed};
use crate::kubelet::store::now_rfc3339;

/// Records Events about one pod, as this node's kubelet.
#[derive(Clone)]
pub struct Recorder {
    api: kube::Client,
    subject: Subject,
}

impl Recorder {
    pub fn for_pod(api: kube::Client, node: &str, pod: &Pod) -> Recorder {
        Recorder {
            api,
            subject: Subject::of(node, pod),
        }
    }

    pub async fn warning(&self, reason: &str, message: &str) -> Result<(), kube::Error> {
        let event = typed(self.subject.event("Warning", reason, message))?;
        let events: kube::Api<Event> =
            kube::Api::namespaced(self.api.clone(), &self.subject.namespace);
        events.create(&post_params(), &event).await.map(drop)
    }
}

/// The pod an Event is about, and the node reporting it.
#[derive(Clone)]
struct Subject {
    node: String,
    namespace: String,
    name: String,
    uid: String,
}

impl Subject {
    fn of(node: &str, pod: &Pod) -> Subject {
        let meta = &pod.metadata;
        Subject {
            node: node.to_owned(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
        }
    }

    fn event(&self, kind: &str, reason: &str, message: &str) -> serde_json::Value {
        let now = now_rfc3339();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        // The kubelet's naming: the object's name and a time in hex.
        let name = format!("{}.{nanos:x}", self.name);
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": self.namespace,
                "name": self.name,
                "uid": self.uid,
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": { "component": "kubelet", "host": self.node },
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_pod_and_node() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "web", "namespace": "shop", "uid": "u-1" }
        }))
        .unwrap();
        let event = Subject::of("node1", &pod).event("Warning", "SizeLimitExceeded", "too big");
        assert_eq!(event["involvedObject"]["uid"], "u-1");
        assert_eq!(event["metadata"]["namespace"], "shop");
        assert!(
            event["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("web.")
        );
        assert_eq!(event["source"]["host"], "node1");
        let event: k8s_openapi::api::core::v1::Event = serde_json::from_value(event).unwrap();
        assert_eq!(event.type_.as_deref(), Some("Warning"));
    }
}
