//! The DaemonSet controller, after kube-controller-manager's
//! `pkg/controller/daemon`: one pod on every eligible node (its
//! nodeSelector, required node affinity, and taints the pod does not
//! tolerate, with the tolerations every daemon pod gets), pinned there by
//! node affinity on `metadata.name` and placed by the scheduler. A node that
//! joins gets its pod; a node that goes, or no longer qualifies, loses it.
//! Each template is a ControllerRevision and its pods carry its
//! `controller-revision-hash`; a new template replaces the pods node by node
//! within maxUnavailable (or, with maxSurge, starts the new pod first), or
//! waits for the old ones to be deleted (OnDelete). The status counts nodes
//! as `kubectl rollout status` reads them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use tracing::info;

use super::client::written;
use super::kind::Kind;
use super::{Context, Controller, ControllerError, events, meta};
use crate::kinds::IntOrPercent;
use crate::scheduler::filter::{node_affinity_admits, tolerates};

pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
const COMPONENT: &str = "daemonset-controller";

/// The tolerations every daemon pod gets (`AddOrUpdateDaemonPodTolerations`):
/// it stays on a node that is unwell and goes to one that is cordoned.
const DEFAULT_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
/// Tolerated too by pods on the host's network, which need no pod network.
const HOST_NETWORK_TOLERATION: (&str, &str) =
    ("node.kubernetes.io/network-unavailable", "NoSchedule");

pub struct DaemonSets;

impl Controller for DaemonSets {
    const NAME: &'static str = "daemonset";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let nodes = context.cache.list(Kind::Node);
        let mut written = BTreeSet::new();
        for set in context.cache.list(Kind::DaemonSet) {
            if !meta::is_terminating(&set) {
                written.extend(sync(context, &set, &nodes).await?);
            }
        }
        Ok(written.into_iter().collect())
    }
}

/// What one node has of a DaemonSet and whether it should.
#[derive(Debug)]
struct Placement<'a> {
    node: &'a str,
    eligible: Eligibility,
    /// The set's pods there that are not being deleted, oldest first.
    pods: Vec<&'a Value>,
}

/// `NodeShouldRunDaemonPod`'s answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligibility {
    /// A pod should be started there.
    pub should_run: bool,
    /// A pod already there may stay.
    pub should_continue: bool,
}

/// What a pass does: pods to start (on these nodes) and pods to delete.
#[derive(Debug, Default, PartialEq)]
struct Actions<'a> {
    create: Vec<&'a str>,
    delete: Vec<&'a Value>,
}

impl Actions<'_> {
    fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

async fn sync(
    context: &Context,
    set: &Value,
    nodes: &[Value],
) -> Result<Vec<Kind>, ControllerError> {
    let mut written = Vec::new();
    let template = &set["spec"]["template"];
    let hash = meta::template_hash(template);
    if sync_revisions(context, set, &hash).await? {
        written.push(Kind::ControllerRevision);
    }
    let namespace = meta::namespace(set);
    let owned: Vec<Value> = context
        .cache
        .list_in(Kind::Pod, namespace)
        .into_iter()
        .filter(|pod| meta::controlled_by(pod, meta::uid(set)))
        .collect();
    let probe = pod_for(set, &hash, None);
    let mut placements: BTreeMap<&str, Placement> = nodes
        .iter()
        .map(|node| {
            let placement = Placement {
                node: meta::name(node),
                eligible: eligibility(&probe, node),
                pods: Vec::new(),
            };
            (meta::name(node), placement)
        })
        .collect();
    let mut actions = Actions::default();
    let mut by_age: Vec<&Value> = owned.iter().collect();
    by_age.sort_by_key(|pod| created(pod));
    for pod in by_age {
        if meta::is_terminating(pod) {
            continue;
        }
        match placements.get_mut(target_node(pod)) {
            Some(placement) if meta::pod_finished(pod) => {
                failed_pod_event(context, set, pod, placement.node).await;
                actions.delete.push(pod);
            }
            Some(placement) => placement.pods.push(pod),
            // Its node is gone.
            None => actions.delete.push(pod),
        }
    }
    let placements: Vec<Placement> = placements.into_values().collect();
    let desired = placements.iter().filter(|p| p.eligible.should_run).count();
    let rolling =
        rolling_update(set).map(|(surge, unavailable)| limits(surge, unavailable, desired));
    manage(
        &placements,
        &hash,
        rolling.is_some_and(|(max_surge, _)| max_surge > 0),
        &mut actions,
    );
    if actions.is_empty()
        && let Some((max_surge, max_unavailable)) = rolling
    {
        let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
        let now = meta::timestamp_now();
        let available = |pod: &Value| pod_available(pod, min_ready, now);
        actions = roll(&placements, &hash, max_surge, max_unavailable, &available);
    }
    if !actions.is_empty() {
        apply(context, set, &hash, &actions).await?;
        written.push(Kind::Pod);
    }
    if write_status(context, set, &hash, &placements).await? {
        written.push(Kind::DaemonSet);
    }
    Ok(written)
}

/// maxSurge and maxUnavailable of a RollingUpdate set; `None` for OnDelete.
fn rolling_update(set: &Value) -> Option<(IntOrPercent, IntOrPercent)> {
    let strategy = &set["spec"]["updateStrategy"];
    if strategy["type"] == "OnDelete" {
        return None;
    }
    let rolling = &strategy["rollingUpdate"];
    let parse = |value: &Value| IntOrPercent::of(value).unwrap_or(IntOrPercent::Int(0));
    Some((
        parse(&rolling["maxSurge"]),
        parse(&rolling["maxUnavailable"]),
    ))
}

/// maxSurge and maxUnavailable in pods for `desired` nodes, rounded up;
/// never both 0, so a rollout always moves.
fn limits(surge: IntOrPercent, unavailable: IntOrPercent, desired: usize) -> (usize, usize) {
    let max_surge = surge.scaled_up(desired);
    let mut max_unavailable = unavailable.scaled_up(desired);
    if desired > 0 && max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    (max_surge, max_unavailable)
}

/// Whether a daemon pod (the template with the default tolerations) should
/// run on `node`, and may keep running there.
pub fn eligibility(pod: &Value, node: &Value) -> Eligibility {
    let never = Eligibility {
        should_run: false,
        should_continue: false,
    };
    let pinned = meta::node_name(pod);
    if !pinned.is_empty() && pinned != meta::name(node) {
        return never;
    }
    if !node_affinity_admits(pod, node) {
        return never;
    }
    let tolerations = pod["spec"]["tolerations"].as_array();
    let untolerated = |effect: &str| {
        node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|taint| taint["effect"] == effect)
            .any(|taint| {
                !tolerations
                    .into_iter()
                    .flatten()
                    .any(|toleration| tolerates(toleration, taint))
            })
    };
    if untolerated("NoExecute") {
        return never;
    }
    Eligibility {
        should_run: !untolerated("NoSchedule"),
        should_continue: true,
    }
}

/// The node a daemon pod is for: where it is bound, else where its node
/// affinity pins it.
fn target_node(pod: &Value) -> &str {
    let bound = meta::node_name(pod);
    if !bound.is_empty() {
        return bound;
    }
    pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|term| term["matchFields"].as_array().into_iter().flatten())
        .find(|field| field["key"] == "metadata.name" && field["operator"] == "In")
        .and_then(|field| field["values"][0].as_str())
        .unwrap_or_default()
}

fn created(pod: &Value) -> (&str, &str) {
    (
        pod["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or_default(),
        meta::name(pod),
    )
}

fn revision_hash(pod: &Value) -> &str {
    pod["metadata"]["labels"][REVISION_HASH_LABEL]
        .as_str()
        .unwrap_or_default()
}

/// `podsShouldBeOnNode`: a pod where one should run and there is none; no
/// pods where none may stay; one pod per node (with surge, one of each
/// revision while the new one starts), the oldest kept.
fn manage<'a>(placements: &[Placement<'a>], hash: &str, surge: bool, actions: &mut Actions<'a>) {
    for placement in placements {
        if !placement.eligible.should_continue {
            actions.delete.extend(&placement.pods);
            continue;
        }
        if placement.pods.is_empty() {
            if placement.eligible.should_run {
                actions.create.push(placement.node);
            }
            continue;
        }
        if surge {
            let (new, old): (Vec<&Value>, Vec<&Value>) = placement
                .pods
                .iter()
                .partition(|pod| revision_hash(pod) == hash);
            actions.delete.extend(new.iter().skip(1));
            actions.delete.extend(old.iter().skip(1));
        } else {
            actions.delete.extend(placement.pods.iter().skip(1));
        }
    }
}

/// The rolling update (`rollingUpdate` in Kubernetes' daemon/update.go)
/// over nodes that each hold at most one pod of each revision.
/// Without surge: old pods are deleted (the next pass starts their
/// replacements) while fewer than `max_unavailable` nodes lack an available
/// pod; an old pod that is not available goes at once. With surge: new pods
/// start beside old ones on up to `max_surge` nodes, and an old pod goes
/// once the new one beside it is available.
fn roll<'a>(
    placements: &[Placement<'a>],
    hash: &str,
    max_surge: usize,
    max_unavailable: usize,
    available: &dyn Fn(&Value) -> bool,
) -> Actions<'a> {
    let mut actions = Actions::default();
    let split = |placement: &Placement<'a>| {
        let new = placement
            .pods
            .iter()
            .find(|pod| revision_hash(pod) == hash)
            .copied();
        let old = placement
            .pods
            .iter()
            .find(|pod| revision_hash(pod) != hash)
            .copied();
        (new, old)
    };
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for placement in placements.iter().filter(|p| p.eligible.should_continue) {
            match split(placement) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => unavailable += usize::from(!available(new)),
                (None, Some(old)) if !available(old) => actions.delete.push(old),
                (None, Some(old)) => candidates.push(old),
            }
        }
        let room = max_unavailable.saturating_sub(unavailable);
        actions.delete.extend(candidates.into_iter().take(room));
    } else {
        let mut surging = 0;
        let mut candidates = Vec::new();
        for placement in placements.iter().filter(|p| p.eligible.should_run) {
            match split(placement) {
                (_, None) => {}
                (None, Some(old)) if !available(old) => actions.create.push(placement.node),
                (None, Some(_)) => candidates.push(placement.node),
                (Some(new), Some(_)) if !available(new) => surging += 1,
                (Some(_), Some(old)) => actions.delete.push(old),
            }
        }
        let room = max_surge.saturating_sub(surging);
        actions.create.extend(candidates.into_iter().take(room));
    }
    actions
}

/// Ready for at least `min_ready` seconds by `now`.
fn pod_available(pod: &Value, min_ready: i64, now: k8s_openapi::jiff::Timestamp) -> bool {
    if !meta::pod_ready(pod) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|condition| condition["type"] == "Ready")
        .and_then(|condition| meta::parse_time(&condition["lastTransitionTime"]))
        .is_some_and(|since| now.as_second() - since.as_second() >= min_ready)
}

/// The pod the set runs on `node` (`None`: the pod its eligibility is
/// judged by): the template labelled with its revision, with the default
/// tolerations and, on a node, node affinity to that node alone.
fn pod_for(set: &Value, hash: &str, node: Option<&str>) -> Value {
    let template = &set["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["labels"][REVISION_HASH_LABEL] = json!(hash);
    metadata["generateName"] = json!(format!("{}-", meta::name(set)));
    metadata["namespace"] = set["metadata"]["namespace"].clone();
    metadata["ownerReferences"] = json!([meta::controller_reference(set)]);
    let mut spec = template["spec"].clone();
    add_default_tolerations(&mut spec);
    if let Some(node) = node {
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({
            "nodeSelectorTerms": [{ "matchFields": [
                { "key": "metadata.name", "operator": "In", "values": [node] },
            ] }],
        });
    }
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec })
}

fn add_default_tolerations(spec: &mut Value) {
    let host_network = spec["hostNetwork"].as_bool() == Some(true);
    let wanted = DEFAULT_TOLERATIONS
        .iter()
        .chain(host_network.then_some(&HOST_NETWORK_TOLERATION));
    if !spec["tolerations"].is_array() {
        spec["tolerations"] = json!([]);
    }
    let tolerations = spec["tolerations"].as_array_mut().expect("an array");
    for &(key, effect) in wanted {
        tolerations
            .retain(|toleration| !(toleration["key"] == key && toleration["effect"] == effect));
        tolerations.push(json!({ "key": key, "operator": "Exists", "effect": effect }));
    }
}

async fn apply(
    context: &Context,
    set: &Value,
    hash: &str,
    actions: &Actions<'_>,
) -> Result<(), ControllerError> {
    let namespace = meta::namespace(set);
    for node in &actions.create {
        let pod = pod_for(set, hash, Some(node));
        match context
            .client
            .create(Kind::Pod, Some(namespace), &pod)
            .await
        {
            Ok(created) => {
                info!(
                    daemonset = meta::name(set),
                    node,
                    pod = meta::name(&created),
                    "created pod"
                );
                let message = format!("Created pod: {}", meta::name(&created));
                record(context, set, "Normal", "SuccessfulCreate", &message).await;
            }
            // Its namespace is going away: so will the set.
            Err(error) if error.is_forbidden() => return Ok(()),
            // The template does not make a valid pod: say so, and retry
            // with the next resync rather than fail the whole pass.
            Err(error) => {
                let message = format!("Error creating: {}", error.message);
                record(context, set, "Warning", "FailedCreate", &message).await;
            }
        }
    }
    for pod in &actions.delete {
        context.client.delete(Kind::Pod, pod, None).await?;
        let message = format!("Deleted pod: {}", meta::name(pod));
        record(context, set, "Normal", "SuccessfulDelete", &message).await;
    }
    Ok(())
}

async fn failed_pod_event(context: &Context, set: &Value, pod: &Value, node: &str) {
    let message = format!(
        "Found failed daemon pod {}/{} on node {node}, will try to kill it",
        meta::namespace(pod),
        meta::name(pod)
    );
    record(context, set, "Warning", "FailedDaemonPod", &message).await;
}

async fn record(context: &Context, set: &Value, kind: &str, reason: &str, message: &str) {
    events::record(context, set, "DaemonSet", kind, reason, message, COMPONENT).await;
}

/// The ControllerRevision of the current template exists and is the
/// newest; old ones beyond `revisionHistoryLimit` that no pod uses go.
/// Whether it wrote.
async fn sync_revisions(
    context: &Context,
    set: &Value,
    hash: &str,
) -> Result<bool, ControllerError> {
    let namespace = meta::namespace(set);
    let mut revisions: Vec<Value> = context
        .cache
        .list_in(Kind::ControllerRevision, namespace)
        .into_iter()
        .filter(|revision| meta::controlled_by(revision, meta::uid(set)))
        .collect();
    revisions.sort_by_key(|revision| revision["revision"].as_i64().unwrap_or(0));
    let newest = revisions
        .last()
        .and_then(|revision| revision["revision"].as_i64())
        .unwrap_or(0);
    let current = revisions
        .iter()
        .position(|revision| revision["metadata"]["labels"][REVISION_HASH_LABEL] == hash);
    let mut wrote = false;
    match current {
        // A template seen before (a rollback): its revision becomes the newest.
        Some(index) if revisions[index]["revision"].as_i64() != Some(newest) => {
            let mut revision = revisions[index].clone();
            revision["revision"] = json!(newest + 1);
            wrote |= written(
                context
                    .client
                    .update(Kind::ControllerRevision, &revision)
                    .await,
            )?;
        }
        Some(_) => {}
        None => {
            let revision = new_revision(set, hash, newest + 1);
            match context
                .client
                .create(Kind::ControllerRevision, Some(namespace), &revision)
                .await
            {
                Ok(_) => wrote = true,
                Err(error) if error.is_conflict() || error.is_forbidden() => {}
                Err(error) => return Err(error.into()),
            }
        }
    }
    let live: BTreeSet<String> = context
        .cache
        .list_in(Kind::Pod, namespace)
        .iter()
        .filter(|pod| meta::controlled_by(pod, meta::uid(set)))
        .map(|pod| revision_hash(pod).to_owned())
        .collect();
    let limit = set["spec"]["revisionHistoryLimit"].as_u64().unwrap_or(10) as usize;
    let old: Vec<&Value> = revisions
        .iter()
        .filter(|revision| revision["metadata"]["labels"][REVISION_HASH_LABEL] != hash)
        .collect();
    let excess = old.len().saturating_sub(limit);
    for revision in old
        .into_iter()
        .filter(|revision| {
            let hash = revision["metadata"]["labels"][REVISION_HASH_LABEL]
                .as_str()
                .unwrap_or_default();
            !live.contains(hash)
        })
        .take(excess)
    {
        context
            .client
            .delete(Kind::ControllerRevision, revision, None)
            .await?;
        wrote = true;
    }
    Ok(wrote)
}

/// A ControllerRevision holding the template as the strategic merge patch
/// `kubectl rollout undo` applies.
fn new_revision(set: &Value, hash: &str, number: i64) -> Value {
    let template = &set["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels[REVISION_HASH_LABEL] = json!(hash);
    let mut patch = template.clone();
    patch["$patch"] = json!("replace");
    json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": format!("{}-{hash}", meta::name(set)),
            "namespace": set["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [meta::controller_reference(set)],
        },
        "data": { "spec": { "template": patch } },
        "revision": number,
    })
}

/// `updateDaemonSetStatus`: per node that should run a pod, whether it has
/// one, ready, available, of the current revision; pods where none should
/// be are misscheduled.
fn status(set: &Value, hash: &str, placements: &[Placement]) -> Value {
    let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let now = meta::timestamp_now();
    let (mut desired, mut current, mut ready, mut available, mut updated, mut misscheduled) =
        (0, 0, 0, 0, 0, 0);
    for placement in placements {
        let oldest = placement.pods.first();
        if !placement.eligible.should_run {
            misscheduled += usize::from(oldest.is_some());
            continue;
        }
        desired += 1;
        let Some(pod) = oldest else { continue };
        current += 1;
        ready += usize::from(meta::pod_ready(pod));
        available += usize::from(pod_available(pod, min_ready, now));
        updated += usize::from(revision_hash(pod) == hash);
    }
    let mut status = set["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["desiredNumberScheduled"] = json!(desired);
    status["currentNumberScheduled"] = json!(current);
    status["numberReady"] = json!(ready);
    status["numberAvailable"] = json!(available);
    status["numberUnavailable"] = json!(desired - available);
    status["updatedNumberScheduled"] = json!(updated);
    status["numberMisscheduled"] = json!(misscheduled);
    status["observedGeneration"] = set["metadata"]["generation"].clone();
    status
}

/// Writes the status when it changed; whether it wrote.
async fn write_status(
    context: &Context,
    set: &Value,
    hash: &str,
    placements: &[Placement<'_>],
) -> Result<bool, ControllerError> {
    let status = status(set, hash, placements);
    if status == set["status"] {
        return Ok(false);
    }
    let mut updated = set.clone();
    updated["status"] = status;
    Ok(written(
        context
            .client
            .update_status(Kind::DaemonSet, &updated)
            .await,
    )?)
}

#[cfg(test)]
mod tests;
