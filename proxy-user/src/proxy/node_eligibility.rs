//! Whether this node should still receive load-balanced traffic (KEP-3836):
//! not while its Node is being deleted (a deletionTimestamp) or the
//! cluster autoscaler has tainted it `ToBeDeletedByClusterAutoscaler`, so
//! that load balancers probing kube-proxy's `/healthz` drain it first. Read
//! from the agent's Node through whichever source the agent watches.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api,
    runtime::{WatchStreamExt as _, watcher},
};
use skiff_etcd::{
    keys::{NODES, object_key},
    list_watch::{Change, Decoder, Event, ListWatch},
};
use tokio::sync::mpsc;

/// The taint the cluster autoscaler puts on a node it is about to remove.
const TO_BE_DELETED_TAINT: &str = "ToBeDeletedByClusterAutoscaler";

/// Shared by the Node's watch (which sets it) and the healthz server. A
/// node is eligible until its Node says otherwise, as kube-proxy's is.
#[derive(Clone, Debug)]
pub struct NodeEligibility(Arc<AtomicBool>);

impl Default for NodeEligibility {
    fn default() -> Self {
        NodeEligibility(Arc::new(AtomicBool::new(true)))
    }
}

impl NodeEligibility {
    pub fn eligible(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Takes in the Node as now stored; `None`: it was deleted.
    fn observe(&self, node: Option<&Node>, name: &str) {
        let eligible = node.is_some_and(eligible);
        if self.0.swap(eligible, Ordering::Relaxed) != eligible {
            tracing::info!(
                node = name,
                eligible,
                "the node's eligibility for traffic changed"
            );
        }
    }
}

/// Whether `node` is neither being deleted nor tainted for deletion.
fn eligible(node: &Node) -> bool {
    let tainted = node
        .spec
        .iter()
        .flat_map(|spec| spec.taints.iter().flatten())
        .any(|taint| taint.key == TO_BE_DELETED_TAINT);
    node.metadata.deletion_timestamp.is_none() && !tainted
}

/// Watches Node `name` through the API server with `client`, keeping
/// `eligibility` current. Runs for as long as the agent does.
pub async fn watch_api(client: kube::Client, name: String, eligibility: NodeEligibility) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(Api::<Node>::all(client), config).default_backoff());
    let mut listed = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(node)) => eligibility.observe(Some(&node), &name),
            Ok(watcher::Event::Delete(_)) => eligibility.observe(None, &name),
            Ok(watcher::Event::Init) => listed = Some(None),
            Ok(watcher::Event::InitApply(node)) => listed = Some(Some(node)),
            Ok(watcher::Event::InitDone) => match listed.take() {
                Some(Some(node)) => eligibility.observe(Some(&node), &name),
                // Not registered (yet): eligible, as before the Node is seen.
                _ => eligibility.0.store(true, Ordering::Relaxed),
            },
            Err(error) => tracing::warn!(%error, node = name, "watching the node failed; retrying"),
        }
    }
}

/// Watches Node `name` in etcd at `endpoints` (`/registry/minions/<name>`),
/// keeping `eligibility` current. Runs for as long as the agent does.
pub async fn watch_etcd(endpoints: Vec<String>, name: String, eligibility: NodeEligibility) {
    let key = object_key(NODES, None, &name);
    let (tx, mut rx) = mpsc::channel(4);
    let decoder = NodeKey(key.clone().into_bytes());
    tokio::spawn(ListWatch::new(endpoints, vec![key], decoder).run::<NodeEvent>(tx));
    while let Some(NodeEvent(event)) = rx.recv().await {
        match event {
            Event::Resync { objects, .. } => match objects.last() {
                Some((_, node)) => eligibility.observe(Some(node), &name),
                None => eligibility.0.store(true, Ordering::Relaxed),
            },
            Event::Changes { changes, .. } => {
                for change in changes {
                    match change {
                        Change::Put(_, node) => eligibility.observe(Some(&node), &name),
                        Change::Delete(_) => eligibility.observe(None, &name),
                    }
                }
            }
        }
    }
}

/// The Node's key alone (the watched prefix also holds nodes whose names
/// start with this one's).
struct NodeKey(Vec<u8>);

impl Decoder for NodeKey {
    type Key = ();
    type Value = Node;

    fn key(&self, key: &[u8]) -> Option<()> {
        (key == self.0).then_some(())
    }

    fn value(&self, _: &(), value: &[u8], _: i64) -> Result<Node, serde_json::Error> {
        serde_json::from_slice(value)
    }
}

struct NodeEvent(Event<(), Node>);

impl From<Event<(), Node>> for NodeEvent {
    fn from(event: Event<(), Node>) -> Self {
        NodeEvent(event)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(value: serde_json::Value) -> Node {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_node_being_deleted_or_tainted_for_deletion_is_not_eligible() {
        assert!(eligible(&node(json!({"metadata": {"name": "n"}}))));
        assert!(eligible(&node(json!({
            "metadata": {"name": "n"},
            "spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]},
        }))));
        assert!(!eligible(&node(json!({
            "metadata": {"name": "n"},
            "spec": {"taints": [{"key": TO_BE_DELETED_TAINT, "value": "1700000000", "effect": "NoSchedule"}]},
        }))));
        assert!(!eligible(&node(json!({
            "metadata": {"name": "n", "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["x"]},
        }))));
    }

    #[test]
    fn eligibility_follows_the_node_and_a_deleted_node_is_not_eligible() {
        let eligibility = NodeEligibility::default();
        assert!(eligibility.eligible());
        let tainted = node(json!({
            "metadata": {"name": "n"},
            "spec": {"taints": [{"key": TO_BE_DELETED_TAINT, "effect": "NoSchedule"}]},
        }));
        eligibility.observe(Some(&tainted), "n");
        assert!(!eligibility.eligible());
        eligibility.observe(Some(&node(json!({"metadata": {"name": "n"}}))), "n");
        assert!(eligibility.eligible());
        eligibility.observe(None, "n");
        assert!(!eligibility.eligible());
    }
}
