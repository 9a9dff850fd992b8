//! The Deployment controller: one ReplicaSet per pod template
//! (`<deployment>-<hash of the template>`), numbered by revision, scaled as
//! the strategy says — RollingUpdate within maxSurge/maxUnavailable
//! counting available pods (Ready for minReadySeconds), or Recreate — with
//! no rollout while paused, the oldest scaled-down ReplicaSets deleted
//! beyond revisionHistoryLimit, and a status that `kubectl rollout status`
//! reads. Time-based changes (a pod becoming available, a deadline
//! passing) are seen by the controllers' periodic resync.

mod progress;
mod revision;
mod rollout;

use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tracing::info;

use super::client::written;
use super::kind::Kind;
use super::replicaset::{REPLICA_FAILURE, replicas};
use super::{Context, Controller, ControllerError, events, meta};
use progress::{Counts, Pass};

const HASH_LABEL: &str = "pod-template-hash";

pub struct Deployments;

/// A ReplicaSet of a Deployment and what its pods do.
struct Owned {
    replica_set: Value,
    /// What the Deployment wants it scaled to (changed by this pass).
    replicas: usize,
    active: usize,
    ready: usize,
    /// Available pods, at most as many as it is scaled to: pods beyond
    /// that are on their way out.
    available: usize,
    /// Every pod, terminating ones too (Recreate waits for them).
    pods: usize,
}

impl Controller for Deployments {
    const NAME: &'static str = "deployment";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let mut written = Vec::new();
        for deployment in context.cache.list(Kind::Deployment) {
            if meta::is_terminating(&deployment) {
                continue;
            }
            written.extend(reconcile_one(context, deployment).await?);
        }
        Ok(written)
    }
}

/// The Deployment's ReplicaSets, oldest first (scaling down starts there).
fn owned(context: &Context, deployment: &Value, now: Timestamp) -> Vec<Owned> {
    let namespace = meta::namespace(deployment);
    let min_ready = deployment["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let pods = context.cache.list_in(Kind::Pod, namespace);
    let mut owned: Vec<Owned> = context
        .cache
        .list_in(Kind::ReplicaSet, namespace)
        .into_iter()
        .filter(|rs| meta::controlled_by(rs, meta::uid(deployment)))
        .map(|replica_set| {
            let mine: Vec<&Value> = pods
                .iter()
                .filter(|pod| meta::controlled_by(pod, meta::uid(&replica_set)))
                .collect();
            let active: Vec<&&Value> = mine.iter().filter(|pod| meta::pod_active(pod)).collect();
            let wanted = replicas(&replica_set);
            Owned {
                replicas: wanted,
                active: active.len(),
                ready: active.iter().filter(|pod| meta::pod_ready(pod)).count(),
                available: active
                    .iter()
                    .filter(|pod| meta::pod_available(pod, min_ready, now))
                    .count()
                    .min(wanted),
                pods: mine.len(),
                replica_set,
            }
        })
        .collect();
    owned.sort_by_key(|rs| {
        rs.replica_set["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    });
    owned
}

async fn reconcile_one(
    context: &Context,
    mut deployment: Value,
) -> Result<Vec<Kind>, ControllerError> {
    let now = meta::timestamp_now();
    let mut owned = owned(context, &deployment, now);
    let paused = deployment["spec"]["paused"].as_bool() == Some(true);
    let template = meta::pruned(&deployment["spec"]["template"]);
    let current = owned
        .iter()
        .position(|rs| same_template(&rs.replica_set["spec"]["template"], &template));
    let next_revision = revision::next(
        owned
            .iter()
            .enumerate()
            .filter(|(index, _)| Some(*index) != current)
            .map(|(_, rs)| &rs.replica_set),
    );
    let mut wrote = Vec::new();
    let desired = replicas(&deployment);
    match current {
        None if paused => {}
        None => {
            let Some(name) =
                create_replica_set(context, &deployment, &owned, &template, next_revision).await?
            else {
                return Ok(vec![Kind::ReplicaSet]);
            };
            wrote.push(Kind::ReplicaSet);
            match set_revision(context, &mut deployment, next_revision).await? {
                None => return Ok(wrote),
                Some(changed) => wrote.extend(changed.then_some(Kind::Deployment)),
            }
            let pass = Pass {
                desired,
                max_unavailable: max_unavailable(&deployment, desired),
                current: Some(&name),
                created: true,
                replica_failure: replica_failure(&owned, None),
                now,
            };
            if write_status(context, &deployment, &owned, None, &pass).await? {
                wrote.push(Kind::Deployment);
            }
            return Ok(wrote);
        }
        Some(index) => {
            if sync_replica_set(context, &deployment, &owned[index], next_revision).await? {
                return Ok(vec![Kind::ReplicaSet]);
            }
            let number = revision::of(&owned[index].replica_set);
            match set_revision(context, &mut deployment, number).await? {
                None => return Ok(wrote),
                Some(changed) => wrote.extend(changed.then_some(Kind::Deployment)),
            }
        }
    }
    match (current, paused) {
        (Some(index), false) => match deployment["spec"]["strategy"]["type"].as_str() {
            Some("Recreate") => rollout::recreate(&mut owned, index, desired),
            _ => rollout::rolling_update(
                &mut owned,
                index,
                desired,
                &deployment["spec"]["strategy"]["rollingUpdate"],
            ),
        },
        (Some(index), true) => scale_paused(&mut owned, index, desired),
        (None, _) => {}
    }
    if scale(context, &deployment, &owned).await? {
        wrote.push(Kind::ReplicaSet);
    }
    let complete = current.is_some_and(|index| {
        let new = &owned[index];
        let active: usize = owned.iter().map(|rs| rs.active).sum();
        new.active == desired && active == desired && new.available == desired
    });
    if (paused || complete) && clean_up(context, &deployment, &owned, current).await? {
        wrote.push(Kind::ReplicaSet);
    }
    let name = current.map(|index| meta::name(&owned[index].replica_set).to_owned());
    let pass = Pass {
        desired,
        max_unavailable: max_unavailable(&deployment, desired),
        current: name.as_deref(),
        created: false,
        replica_failure: replica_failure(&owned, current),
        now,
    };
    if write_status(context, &deployment, &owned, current, &pass).await? {
        wrote.push(Kind::Deployment);
    }
    Ok(wrote)
}

/// Whether a ReplicaSet's template is the Deployment's (`template`,
/// pruned; the ReplicaSet's carries the hash label besides).
fn same_template(rs_template: &Value, template: &Value) -> bool {
    let mut rs_template = rs_template.clone();
    if let Some(labels) = rs_template["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
    }
    &meta::pruned(&rs_template) == template
}

/// While paused nothing rolls out, but a change of `spec.replicas` still
/// reaches the current ReplicaSet when it is the only one with pods.
fn scale_paused(owned: &mut [Owned], current: usize, desired: usize) {
    let others_empty = owned
        .iter()
        .enumerate()
        .all(|(index, rs)| index == current || rs.replicas == 0);
    if others_empty {
        owned[current].replicas = desired;
    }
}

/// Sets `deployment.kubernetes.io/revision` on the Deployment (then
/// `deployment` is the stored one): whether it changed it, `None` when
/// someone else changed the Deployment first.
async fn set_revision(
    context: &Context,
    deployment: &mut Value,
    number: u64,
) -> Result<Option<bool>, ControllerError> {
    let number = json!(number.to_string());
    if deployment["metadata"]["annotations"][revision::REVISION] == number {
        return Ok(Some(false));
    }
    let mut updated = deployment.clone();
    if !updated["metadata"]["annotations"].is_object() {
        updated["metadata"]["annotations"] = json!({});
    }
    updated["metadata"]["annotations"][revision::REVISION] = number;
    match context.client.update(Kind::Deployment, &updated).await {
        Ok(stored) => {
            *deployment = stored;
            Ok(Some(true))
        }
        Err(error) if error.is_conflict() || error.is_not_found() => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The current ReplicaSet's revision annotations and minReadySeconds as
/// the Deployment's; whether it wrote.
async fn sync_replica_set(
    context: &Context,
    deployment: &Value,
    current: &Owned,
    next_revision: u64,
) -> Result<bool, ControllerError> {
    let replica_set = &current.replica_set;
    let annotations = revision::annotations(
        deployment,
        &replica_set["metadata"]["annotations"],
        next_revision,
    );
    let min_ready = json!(deployment["spec"]["minReadySeconds"].as_i64().unwrap_or(0));
    let same_annotations = replica_set["metadata"]["annotations"].as_object() == Some(&annotations)
        || (annotations.is_empty() && replica_set["metadata"]["annotations"].is_null());
    if same_annotations && replica_set["spec"]["minReadySeconds"] == min_ready {
        return Ok(false);
    }
    let raised = revision::of(replica_set) < next_revision;
    let mut updated = replica_set.clone();
    updated["metadata"]["annotations"] = Value::Object(annotations);
    updated["spec"]["minReadySeconds"] = min_ready;
    if !written(context.client.update(Kind::ReplicaSet, &updated).await)? {
        return Ok(false);
    }
    if raised {
        info!(
            deployment = meta::name(deployment),
            replicaset = meta::name(replica_set),
            revision = next_revision,
            "replica set back as the current revision"
        );
    }
    Ok(true)
}

/// Creates the ReplicaSet of the Deployment's (pruned) `template` as
/// revision `number`; its name, or `None` when a leftover of that name is
/// in the way (the next pass sees it) or the namespace is going away.
async fn create_replica_set(
    context: &Context,
    deployment: &Value,
    owned: &[Owned],
    template: &Value,
    number: u64,
) -> Result<Option<String>, ControllerError> {
    let namespace = meta::namespace(deployment);
    let hash = meta::template_hash(template);
    let mut template = deployment["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = deployment["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let desired = replicas(deployment);
    let old_total: usize = owned.iter().map(|rs| rs.replicas).sum();
    // Start as big as the strategy allows right away; the rest follows as
    // old pods go.
    let initial = match deployment["spec"]["strategy"]["type"].as_str() {
        Some("Recreate") => 0,
        _ => {
            let surge = rollout::resolve(
                &deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
                desired,
                true,
            );
            (desired + surge).saturating_sub(old_total).min(desired)
        }
    };
    let name = format!("{}-{hash}", meta::name(deployment));
    let replica_set = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": template["metadata"]["labels"],
            "annotations": revision::annotations(deployment, &Value::Null, number),
            "ownerReferences": [meta::controller_reference(deployment)],
        },
        "spec": {
            "replicas": initial,
            "minReadySeconds": deployment["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
            "selector": selector,
            "template": template,
        },
    });
    match context
        .client
        .create(Kind::ReplicaSet, Some(namespace), &replica_set)
        .await
    {
        Err(error) if error.is_conflict() || error.is_forbidden() => return Ok(None),
        other => {
            other?;
        }
    }
    info!(
        deployment = meta::name(deployment),
        replicaset = name,
        revision = number,
        "new replica set"
    );
    let message = format!("Scaled up replica set {name} to {initial}");
    scaling_event(context, deployment, &message).await;
    Ok(Some(name))
}

/// Writes the replica counts this pass chose; whether it wrote.
async fn scale(
    context: &Context,
    deployment: &Value,
    owned: &[Owned],
) -> Result<bool, ControllerError> {
    let mut wrote = false;
    for rs in owned {
        if rs.replicas == replicas(&rs.replica_set) {
            continue;
        }
        let mut scaled = rs.replica_set.clone();
        scaled["spec"]["replicas"] = json!(rs.replicas);
        if !written(context.client.update(Kind::ReplicaSet, &scaled).await)? {
            continue;
        }
        info!(
            deployment = meta::name(deployment),
            replicaset = meta::name(&rs.replica_set),
            replicas = rs.replicas,
            "scaled"
        );
        let message = format!(
            "Scaled replica set {} to {}",
            meta::name(&rs.replica_set),
            rs.replicas
        );
        scaling_event(context, deployment, &message).await;
        wrote = true;
    }
    Ok(wrote)
}

/// Deletes the old ReplicaSets beyond `spec.revisionHistoryLimit`;
/// whether it deleted any.
async fn clean_up(
    context: &Context,
    deployment: &Value,
    owned: &[Owned],
    current: Option<usize>,
) -> Result<bool, ControllerError> {
    let Some(limit) = deployment["spec"]["revisionHistoryLimit"].as_u64() else {
        return Ok(false);
    };
    let old: Vec<&Value> = owned
        .iter()
        .enumerate()
        .filter(|(index, _)| Some(*index) != current)
        .map(|(_, rs)| &rs.replica_set)
        .collect();
    let victims = revision::beyond_limit(&old, limit as usize);
    for victim in &victims {
        match context.client.delete(Kind::ReplicaSet, victim, None).await {
            Err(error) if error.is_not_found() || error.is_conflict() => {}
            other => {
                other?;
            }
        }
        info!(
            deployment = meta::name(deployment),
            replicaset = meta::name(victim),
            "deleted beyond revisionHistoryLimit"
        );
    }
    Ok(!victims.is_empty())
}

/// The `ScalingReplicaSet` event `kubectl describe deployment` lists.
async fn scaling_event(context: &Context, deployment: &Value, message: &str) {
    events::record(
        context,
        deployment,
        "Deployment",
        "Normal",
        "ScalingReplicaSet",
        message,
        "deployment-controller",
    )
    .await;
}

/// The first ReplicaFailure condition of the ReplicaSets, the current
/// one's first.
fn replica_failure(owned: &[Owned], current: Option<usize>) -> Option<&Value> {
    current.into_iter().chain(0..owned.len()).find_map(|index| {
        owned[index].replica_set["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == REPLICA_FAILURE)
    })
}

/// maxUnavailable as a number of pods (0 for Recreate).
fn max_unavailable(deployment: &Value, desired: usize) -> usize {
    match deployment["spec"]["strategy"]["type"].as_str() {
        Some("Recreate") => 0,
        _ => rollout::resolve(
            &deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            desired,
            false,
        )
        .min(desired),
    }
}

/// Writes the status when it changed; whether it wrote.
async fn write_status(
    context: &Context,
    deployment: &Value,
    owned: &[Owned],
    current: Option<usize>,
    pass: &Pass<'_>,
) -> Result<bool, ControllerError> {
    let counts = Counts {
        replicas: owned.iter().map(|rs| rs.active).sum(),
        updated: current.map_or(0, |index| owned[index].active),
        ready: owned.iter().map(|rs| rs.ready).sum(),
        available: owned.iter().map(|rs| rs.available).sum(),
    };
    let status = progress::status(deployment, counts, pass);
    if status == deployment["status"] {
        return Ok(false);
    }
    let mut updated = deployment.clone();
    updated["status"] = status;
    Ok(written(
        context
            .client
            .update_status(Kind::Deployment, &updated)
            .await,
    )?)
}
