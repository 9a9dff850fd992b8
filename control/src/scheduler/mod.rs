//! The scheduler: binds each pending pod (no `spec.nodeName`, scheduler
//! `default-scheduler`) to a Ready node that fits it, through the binding
//! subresource; a pod no node fits gets `PodScheduled=False` and an event
//! saying why.

mod filter;
pub mod quantity;
mod score;

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use tracing::info;

use crate::controllers::{Context, Controller, ControllerError, Kind, events, meta};
use filter::{Misfit, Resources};
use score::Candidate;

const NAME: &str = "default-scheduler";

pub struct Scheduler;

/// What a node already holds: the requests of its pods and how many of
/// them each owner has there.
#[derive(Default)]
struct NodeLoad {
    used: Resources,
    by_owner: HashMap<String, usize>,
}

impl NodeLoad {
    fn add(&mut self, pod: &Value) {
        self.used.add(filter::requests(pod));
        if let Some(owner) = meta::controller_of(pod) {
            let uid = owner["uid"].as_str().unwrap_or_default().to_owned();
            *self.by_owner.entry(uid).or_default() += 1;
        }
    }
}

fn owner_uid(pod: &Value) -> Option<&str> {
    meta::controller_of(pod).and_then(|owner| owner["uid"].as_str())
}

/// A pod this scheduler should place.
fn pending(pod: &Value) -> bool {
    meta::node_name(pod).is_empty()
        && meta::pod_active(pod)
        && matches!(
            pod["spec"]["schedulerName"].as_str(),
            None | Some("") | Some(NAME)
        )
}

impl Controller for Scheduler {
    const NAME: &'static str = "scheduler";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let nodes = context.cache.list(Kind::Node);
        let pods = context.cache.list(Kind::Pod);
        let mut loads: BTreeMap<String, NodeLoad> = nodes
            .iter()
            .map(|node| (meta::name(node).to_owned(), NodeLoad::default()))
            .collect();
        for pod in pods.iter().filter(|pod| !meta::pod_finished(pod)) {
            if let Some(load) = loads.get_mut(meta::node_name(pod)) {
                load.add(pod);
            }
        }
        let mut queue: Vec<&Value> = pods.iter().filter(|pod| pending(pod)).collect();
        queue.sort_by_key(|pod| {
            (
                pod["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or_default(),
                meta::name(pod),
            )
        });
        let mut written = Vec::new();
        for pod in queue {
            let mut misfits: BTreeMap<Misfit, usize> = BTreeMap::new();
            let mut candidates = Vec::new();
            for node in &nodes {
                let load = &loads[meta::name(node)];
                match filter::check(pod, node, load.used) {
                    Ok(()) => candidates.push(Candidate {
                        name: meta::name(node),
                        allocatable: filter::allocatable(node),
                        used: load.used,
                        siblings: owner_uid(pod)
                            .and_then(|uid| load.by_owner.get(uid).copied())
                            .unwrap_or(0),
                    }),
                    Err(misfit) => *misfits.entry(misfit).or_default() += 1,
                }
            }
            let wrote = match score::best(&candidates, filter::requests(pod)) {
                Some(node) => {
                    let node = node.to_owned();
                    if let Some(load) = loads.get_mut(&node) {
                        load.add(pod);
                    }
                    bind(context, pod, &node).await?
                }
                None => unschedulable(context, pod, &misfits, nodes.len()).await?,
            };
            if wrote {
                written = vec![Kind::Pod];
            }
        }
        Ok(written)
    }
}

/// Binds `pod` to `node`; whether it wrote anything.
async fn bind(context: &Context, pod: &Value, node: &str) -> Result<bool, ControllerError> {
    match context.client.bind(pod, node).await {
        Ok(()) => {}
        // Deleted or bound meanwhile: the next pass sees it.
        Err(error) if error.is_not_found() || error.is_conflict() => return Ok(false),
        Err(error) => return Err(error.into()),
    }
    let (namespace, name) = (meta::namespace(pod), meta::name(pod));
    info!(pod = %format!("{namespace}/{name}"), node, "scheduled");
    let message = format!("Successfully assigned {namespace}/{name} to {node}");
    events::record(context, pod, "Pod", "Normal", "Scheduled", &message, NAME).await;
    Ok(true)
}

/// kube-scheduler's `FitError` message: `0/2 nodes are available: 1
/// Insufficient cpu, 1 node(s) were not ready.`
fn fit_error(misfits: &BTreeMap<Misfit, usize>, nodes: usize) -> String {
    let mut reasons: Vec<String> = misfits
        .iter()
        .map(|(misfit, count)| format!("{count} {}", misfit.reason()))
        .collect();
    reasons.sort();
    if reasons.is_empty() {
        return format!("0/{nodes} nodes are available.");
    }
    format!("0/{nodes} nodes are available: {}.", reasons.join(", "))
}

/// Sets `PodScheduled=False` (reason `Unschedulable`) and records a
/// `FailedScheduling` event, once per distinct reason.
async fn unschedulable(
    context: &Context,
    pod: &Value,
    misfits: &BTreeMap<Misfit, usize>,
    nodes: usize,
) -> Result<bool, ControllerError> {
    let message = fit_error(misfits, nodes);
    let conditions = pod["status"]["conditions"].as_array();
    let current = conditions
        .into_iter()
        .flatten()
        .find(|condition| condition["type"] == "PodScheduled");
    if current.is_some_and(|condition| {
        condition["status"] == "False" && condition["message"].as_str() == Some(&message)
    }) {
        return Ok(false);
    }
    let mut updated = pod.clone();
    let mut conditions: Vec<Value> = conditions
        .into_iter()
        .flatten()
        .filter(|condition| condition["type"] != "PodScheduled")
        .cloned()
        .collect();
    conditions.push(json!({
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": meta::now(),
    }));
    updated["status"]["conditions"] = json!(conditions);
    match context.client.update_status(Kind::Pod, &updated).await {
        Ok(_) => {}
        Err(error) if error.is_not_found() || error.is_conflict() => return Ok(false),
        Err(error) => return Err(error.into()),
    }
    info!(pod = meta::name(pod), %message, "unschedulable");
    events::record(
        context,
        pod,
        "Pod",
        "Warning",
        "FailedScheduling",
        &message,
        NAME,
    )
    .await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_errors_read_like_kube_scheduler() {
        let misfits = BTreeMap::from([(Misfit::Cpu, 1), (Misfit::NotReady, 1)]);
        assert_eq!(
            fit_error(&misfits, 2),
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were not ready."
        );
        assert_eq!(fit_error(&BTreeMap::new(), 0), "0/0 nodes are available.");
    }
}
