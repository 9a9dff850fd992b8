//! The scheduler: binds each pending pod (no `spec.nodeName`, scheduler
//! `default-scheduler`) to a Ready node that fits it, through the binding
//! subresource; a pod no node fits gets `PodScheduled=False` and an event
//! saying why. A pod with claims that wait for their first consumer first
//! gets a node picked for those claims (`volume.kubernetes.io/selected-node`)
//! and is bound once they are (`volumes`).

pub mod filter;
pub mod quantity;
mod score;
mod volumes;

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use tracing::info;

use crate::controllers::{Context, Controller, ControllerError, Kind, events, meta, written};
use crate::kinds::SELECTED_NODE_ANNOTATION;
use filter::{Misfit, Resources};
use score::Candidate;
use volumes::{PodVolumes, Storage};

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
        let storage = Storage {
            claims: context.cache.list(Kind::PersistentVolumeClaim),
            volumes: context.cache.list(Kind::PersistentVolume),
            classes: context.cache.list(Kind::StorageClass),
        };
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
            let (bound, unpicked) = match storage.for_pod(pod) {
                PodVolumes::Schedulable { bound, unpicked } => (bound, unpicked),
                PodVolumes::Waiting => continue,
                PodVolumes::Blocked(reason) => {
                    let message = format!("0/{} nodes are available: {reason}.", nodes.len());
                    if unschedulable(context, pod, &message).await? {
                        written = vec![Kind::Pod];
                    }
                    continue;
                }
            };
            let mut misfits: BTreeMap<Misfit, usize> = BTreeMap::new();
            let mut candidates = Vec::new();
            for node in &nodes {
                let load = &loads[meta::name(node)];
                let fits = filter::check(pod, node, load.used).and_then(|()| {
                    if !volumes::reachable(&bound, node) {
                        return Err(Misfit::VolumeNodeAffinity);
                    }
                    if !unpicked.iter().all(|claim| storage.can_serve(claim, node)) {
                        return Err(Misfit::NoVolume);
                    }
                    Ok(())
                });
                match fits {
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
                Some(node) if !unpicked.is_empty() => pick_node(context, &unpicked, node).await?,
                Some(node) => {
                    let node = node.to_owned();
                    if let Some(load) = loads.get_mut(&node) {
                        load.add(pod);
                    }
                    bind(context, pod, &node).await?
                }
                None => unschedulable(context, pod, &fit_error(&misfits, nodes.len())).await?,
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

/// Picks `node` for the claims that wait for their first consumer; the
/// pod is bound once the binder has bound them there.
async fn pick_node(
    context: &Context,
    claims: &[&Value],
    node: &str,
) -> Result<bool, ControllerError> {
    let mut wrote = false;
    for claim in claims {
        let mut picked = (*claim).clone();
        picked["metadata"]["annotations"][SELECTED_NODE_ANNOTATION] = json!(node);
        wrote |= written(
            context
                .client
                .update(Kind::PersistentVolumeClaim, &picked)
                .await,
        )?;
        info!(
            claim = %format!("{}/{}", meta::namespace(claim), meta::name(claim)),
            node,
            "picked a node for the claim"
        );
    }
    Ok(wrote)
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
    message: &str,
) -> Result<bool, ControllerError> {
    let conditions = pod["status"]["conditions"].as_array();
    let current = conditions
        .into_iter()
        .flatten()
        .find(|condition| condition["type"] == "PodScheduled");
    if current.is_some_and(|condition| {
        condition["status"] == "False" && condition["message"].as_str() == Some(message)
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
        message,
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
