//! The node lifecycle controller: a node whose heartbeats (its Lease in
//! kube-node-lease, or its Ready condition's lastHeartbeatTime) stop for
//! the grace period becomes Ready=Unknown and tainted unreachable; the
//! pods of a node not Ready for the eviction timeout are force-deleted, so
//! their ReplicaSets replace them elsewhere.

use std::collections::HashMap;

use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::warn;

use super::client::written;
use super::kind::Kind;
use super::{Context, Controller, ControllerError, events, meta};

const LEASE_NAMESPACE: &str = "kube-node-lease";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// When a heartbeat was last seen to change, by this instance's clock
/// (as kube-controller-manager does it: immune to the nodes' clocks).
struct Seen {
    heartbeat: (Value, Value),
    at: Instant,
}

#[derive(Default)]
pub struct NodeLifecycle {
    seen: HashMap<String, Seen>,
    not_ready_since: HashMap<String, Instant>,
    /// Pods bound to a node that does not exist, by uid: since when.
    orphaned_since: HashMap<String, Instant>,
}

impl Controller for NodeLifecycle {
    const NAME: &'static str = "nodelifecycle";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let config = &context.config;
        let nodes = context.cache.list(Kind::Node);
        self.seen
            .retain(|name, _| nodes.iter().any(|node| meta::name(node) == name));
        self.not_ready_since
            .retain(|name, _| nodes.iter().any(|node| meta::name(node) == name));
        let mut wrote = Vec::new();
        if self.delete_orphans(context, &nodes).await? {
            wrote.push(Kind::Pod);
        }
        for node in nodes {
            let name = meta::name(&node).to_owned();
            let lease = context.cache.get(Kind::Lease, Some(LEASE_NAMESPACE), &name);
            let heartbeat = (
                lease.map_or(Value::Null, |lease| lease["spec"]["renewTime"].clone()),
                ready_condition(&node).map_or(Value::Null, |c| c["lastHeartbeatTime"].clone()),
            );
            let seen = self.seen.entry(name.clone()).or_insert_with(|| Seen {
                heartbeat: heartbeat.clone(),
                at: Instant::now(),
            });
            if seen.heartbeat != heartbeat {
                *seen = Seen {
                    heartbeat,
                    at: Instant::now(),
                };
            }
            let mut status = meta::condition(&node, "Ready")
                .unwrap_or("Unknown")
                .to_owned();
            if seen.at.elapsed() > config.node_monitor_grace_period && status != "Unknown" {
                if !written(
                    context
                        .client
                        .update_status(Kind::Node, &unknown(&node))
                        .await,
                )? {
                    continue;
                }
                warn!(node = name, "no heartbeat: node is NotReady");
                let message = format!("Node {name} status is now: NodeNotReady");
                events::record(
                    context,
                    &node,
                    "Node",
                    "Normal",
                    "NodeNotReady",
                    &message,
                    "node-controller",
                )
                .await;
                wrote.push(Kind::Node);
                status = "Unknown".into();
            }
            if let Some(tainted) = with_taints(&node, &status) {
                written(context.client.update(Kind::Node, &tainted).await)?;
                wrote.push(Kind::Node);
            }
            if status == "True" {
                self.not_ready_since.remove(&name);
                continue;
            }
            let since = *self
                .not_ready_since
                .entry(name.clone())
                .or_insert_with(Instant::now);
            if since.elapsed() >= config.pod_eviction_timeout && evict(context, &name).await? {
                wrote.push(Kind::Pod);
            }
        }
        Ok(wrote)
    }
}

impl NodeLifecycle {
    /// Force-deletes pods bound to a node that has not existed for the
    /// grace period (deleted, or never registered): no agent will ever
    /// run or remove them. Whether any went.
    async fn delete_orphans(
        &mut self,
        context: &Context,
        nodes: &[Value],
    ) -> Result<bool, ControllerError> {
        let pods = context.cache.list(Kind::Pod);
        let orphans: Vec<&Value> = pods
            .iter()
            .filter(|pod| {
                let node = meta::node_name(pod);
                !node.is_empty() && !nodes.iter().any(|n| meta::name(n) == node)
            })
            .collect();
        self.orphaned_since
            .retain(|uid, _| orphans.iter().any(|pod| meta::uid(pod) == uid));
        let mut any = false;
        for pod in orphans {
            let since = *self
                .orphaned_since
                .entry(meta::uid(pod).to_owned())
                .or_insert_with(Instant::now);
            if since.elapsed() >= context.config.node_monitor_grace_period {
                warn!(
                    pod = meta::name(pod),
                    node = meta::node_name(pod),
                    "deleting a pod of a node that does not exist"
                );
                context.client.delete(Kind::Pod, pod, Some(0)).await?;
                any = true;
            }
        }
        Ok(any)
    }
}

fn ready_condition(node: &Value) -> Option<&Value> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == "Ready")
}

/// `node` with every condition Unknown: nobody reports them any more.
fn unknown(node: &Value) -> Value {
    let mut node = node.clone();
    let now = meta::now();
    let mut conditions: Vec<Value> = node["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !conditions
        .iter()
        .any(|condition| condition["type"] == "Ready")
    {
        conditions.push(json!({ "type": "Ready" }));
    }
    for condition in &mut conditions {
        condition["status"] = json!("Unknown");
        condition["reason"] = json!("NodeStatusUnknown");
        condition["message"] = json!("Kubelet stopped posting node status.");
        condition["lastTransitionTime"] = now.clone();
    }
    node["status"]["conditions"] = json!(conditions);
    node
}

/// `node` with the taints its Ready status calls for (unreachable when
/// Unknown, not-ready when False, neither when True), or `None` when it
/// has them already.
fn with_taints(node: &Value, ready: &str) -> Option<Value> {
    let wanted = match ready {
        "True" => None,
        "False" => Some(NOT_READY),
        _ => Some(UNREACHABLE),
    };
    let current: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut taints: Vec<Value> = current
        .iter()
        .filter(|taint| {
            let key = taint["key"].as_str().unwrap_or_default();
            (key != UNREACHABLE && key != NOT_READY) || Some(key) == wanted
        })
        .cloned()
        .collect();
    if let Some(key) = wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !taints
                .iter()
                .any(|t| t["key"] == key && t["effect"] == effect)
            {
                taints.push(json!({ "key": key, "effect": effect, "timeAdded": meta::now() }));
            }
        }
    }
    if taints == current {
        return None;
    }
    let mut node = node.clone();
    node["spec"]["taints"] = json!(taints);
    Some(node)
}

/// Force-deletes the pods bound to `node`: its agent is not there to stop
/// them or to confirm a graceful deletion. Whether any went.
async fn evict(context: &Context, node: &str) -> Result<bool, ControllerError> {
    let mut any = false;
    for pod in context.cache.list(Kind::Pod) {
        if meta::node_name(&pod) != node {
            continue;
        }
        warn!(
            node,
            pod = meta::name(&pod),
            "deleting the pod of a node that is not ready"
        );
        context.client.delete(Kind::Pod, &pod, Some(0)).await?;
        any = true;
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_follow_readiness() {
        let node =
            json!({ "spec": { "taints": [{ "key": "dedicated", "effect": "NoSchedule" }] } });
        let unreachable = with_taints(&node, "Unknown").unwrap();
        let keys: Vec<&str> = unreachable["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["dedicated", UNREACHABLE, UNREACHABLE]);
        assert!(with_taints(&unreachable, "Unknown").is_none());
        let healthy = with_taints(&unreachable, "True").unwrap();
        assert_eq!(healthy["spec"]["taints"], node["spec"]["taints"]);
        assert!(with_taints(&node, "True").is_none());
        let ready = unknown(
            &json!({ "status": { "conditions": [{ "type": "Ready", "status": "True" }] } }),
        );
        assert_eq!(meta::condition(&ready, "Ready"), Some("Unknown"));
    }
}
