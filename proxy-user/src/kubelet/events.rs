//! Events the agent records (core/v1 Events, created through the API
//! server as the node, so `kubectl describe` and `kubectl get events` show
//! them): the kubelet's about a pod, the service proxy's about a Service.
use k8s_openapi::api::core::v1::{Event, Pod};
use serde_json::json;

use crate::apiserver::{post_params, typed};
use crate::kubelet::store::now_rfc3339;

/// Records Events about one object, as a component of this node.
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

    /// Events about Service `namespace/name` (with its `uid` when known),
    /// as this node's service proxy (`skiff-agent`; kube-proxy reports as
    /// `kube-proxy`).
    pub fn for_service(
        api: kube::Client,
        node: &str,
        (namespace, name): (&str, &str),
        uid: Option<&str>,
    ) -> Recorder {
        Recorder {
            api,
            subject: Subject::service(node, (namespace, name), uid),
        }
    }

    pub async fn warning(&self, reason: &str, message: &str) -> Result<(), kube::Error> {
        self.record("Warning", reason, message).await
    }

    pub async fn normal(&self, reason: &str, message: &str) -> Result<(), kube::Error> {
        self.record("Normal", reason, message).await
    }

    async fn record(&self, kind: &str, reason: &str, message: &str) -> Result<(), kube::Error> {
        let event = typed(self.subject.event(kind, reason, message))?;
        let events: kube::Api<Event> =
            kube::Api::namespaced(self.api.clone(), &self.subject.namespace);
        events.create(&post_params(), &event).await.map(drop)
    }
}

/// The object an Event is about, and the node and component reporting it.
#[derive(Clone)]
struct Subject {
    kind: &'static str,
    component: &'static str,
    node: String,
    namespace: String,
    name: String,
    /// `None` when the reporter does not keep it.
    uid: Option<String>,
}

impl Subject {
    fn of(node: &str, pod: &Pod) -> Subject {
        let meta = &pod.metadata;
        Subject {
            kind: "Pod",
            component: "kubelet",
            node: node.to_owned(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: Some(meta.uid.clone().unwrap_or_default()),
        }
    }

    fn service(node: &str, (namespace, name): (&str, &str), uid: Option<&str>) -> Subject {
        Subject {
            kind: "Service",
            component: "skiff-agent",
            node: node.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid: uid.map(str::to_owned),
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
                "kind": self.kind,
                "namespace": self.namespace,
                "name": self.name,
                "uid": self.uid,
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": { "component": self.component, "host": self.node },
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.component,
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

    #[test]
    fn service_events_come_from_the_service_proxy() {
        let event = Subject::service("node1", ("shop", "web"), Some("u-web")).event(
            "Normal",
            "BackendEjected",
            "backend 10.244.1.5:8080 ejected",
        );
        assert_eq!(event["involvedObject"]["kind"], "Service");
        assert_eq!(event["involvedObject"]["name"], "web");
        assert_eq!(event["source"]["component"], "skiff-agent");
        assert_eq!(event["reportingComponent"], "skiff-agent");
        let event: k8s_openapi::api::core::v1::Event = serde_json::from_value(event).unwrap();
        assert_eq!(event.involved_object.uid.as_deref(), Some("u-web"));
        assert_eq!(event.reason.as_deref(), Some("BackendEjected"));
        let unknown = Subject::service("node1", ("shop", "web"), None).event("Normal", "x", "y");
        assert_eq!(unknown["involvedObject"]["uid"], serde_json::Value::Null);
    }
}
