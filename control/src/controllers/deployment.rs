//! The Deployment controller: one ReplicaSet per pod template
//! (`<deployment>-<hash of the template>`), scaled as the strategy says —
//! RollingUpdate within maxSurge/maxUnavailable counting Ready pods as
//! available, or Recreate — and a status that `kubectl rollout status`
//! reads.

use serde_json::{Value, json};
use tracing::info;

use super::client::written;
use super::kind::Kind;
use super::replicaset::replicas;
use super::{Context, Controller, ControllerError, events, meta};

const HASH_LABEL: &str = "pod-template-hash";
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

pub struct Deployments;

/// A ReplicaSet of a Deployment and what its pods do.
struct Owned {
    replica_set: Value,
    /// What the Deployment wants it scaled to (changed by this pass).
    replicas: usize,
    active: usize,
    /// Ready pods, at most as many as it is scaled to: pods beyond that
    /// are on their way out.
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
            written.extend(reconcile_one(context, &deployment).await?);
        }
        Ok(written)
    }
}

async fn reconcile_one(
    context: &Context,
    deployment: &Value,
) -> Result<Vec<Kind>, ControllerError> {
    let namespace = meta::namespace(deployment);
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
            let active = mine.iter().filter(|pod| meta::pod_active(pod)).count();
            let ready = mine
                .iter()
                .filter(|pod| meta::pod_active(pod) && meta::pod_ready(pod))
                .count();
            let wanted = replicas(&replica_set);
            Owned {
                replicas: wanted,
                active,
                available: ready.min(wanted),
                pods: mine.len(),
                replica_set,
            }
        })
        .collect();
    // Oldest first: scaling down starts there.
    owned.sort_by(|a, b| {
        let created = |rs: &Value| {
            rs["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        created(&a.replica_set).cmp(&created(&b.replica_set))
    });
    let template = &deployment["spec"]["template"];
    let Some(new_index) = owned
        .iter()
        .position(|rs| same_template(&rs.replica_set["spec"]["template"], template))
    else {
        create_replica_set(context, deployment, &owned).await?;
        return Ok(vec![Kind::ReplicaSet]);
    };
    let desired = replicas(deployment);
    if deployment["spec"]["paused"].as_bool() != Some(true) {
        match deployment["spec"]["strategy"]["type"].as_str() {
            Some("Recreate") => recreate(&mut owned, new_index, desired),
            _ => rolling_update(
                &mut owned,
                new_index,
                desired,
                &deployment["spec"]["strategy"]["rollingUpdate"],
            ),
        }
    }
    let mut wrote = Vec::new();
    for rs in &owned {
        if rs.replicas != replicas(&rs.replica_set) {
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
            wrote = vec![Kind::ReplicaSet];
        }
    }
    if write_status(context, deployment, &owned, new_index, desired).await? {
        wrote.push(Kind::Deployment);
    }
    Ok(wrote)
}

/// Whether a ReplicaSet's template is the Deployment's (the RS's carries
/// the hash label besides).
fn same_template(rs_template: &Value, template: &Value) -> bool {
    let mut rs_template = rs_template.clone();
    if let Some(labels) = rs_template["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
    }
    &rs_template == template
}

async fn create_replica_set(
    context: &Context,
    deployment: &Value,
    owned: &[Owned],
) -> Result<(), ControllerError> {
    let namespace = meta::namespace(deployment);
    let hash = meta::template_hash(&deployment["spec"]["template"]);
    let mut template = deployment["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = deployment["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let revision = owned
        .iter()
        .filter_map(|rs| {
            rs.replica_set["metadata"]["annotations"][REVISION_ANNOTATION]
                .as_str()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0)
        + 1;
    let desired = replicas(deployment);
    let old_total: usize = owned.iter().map(|rs| rs.replicas).sum();
    // Start as big as the strategy allows right away; the rest follows as
    // old pods go.
    let initial = match deployment["spec"]["strategy"]["type"].as_str() {
        Some("Recreate") => 0,
        _ => {
            let surge = resolve(
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
            "annotations": { REVISION_ANNOTATION: revision.to_string() },
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
        // A leftover of the same name (the next pass adopts or reports
        // it), or the namespace is going away.
        Err(error) if error.is_conflict() || error.is_forbidden() => return Ok(()),
        other => {
            other?;
        }
    }
    info!(
        deployment = meta::name(deployment),
        replicaset = name,
        "new replica set"
    );
    let message = format!("Scaled up replica set {name} to {initial}");
    scaling_event(context, deployment, &message).await;
    Ok(())
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

/// An intOrString of maxSurge/maxUnavailable against `total`: a number, or
/// a percentage rounded up (surge) or down (unavailable). Both default to
/// 25%.
fn resolve(value: &Value, total: usize, round_up: bool) -> usize {
    match value {
        Value::Number(number) => number.as_u64().unwrap_or(0) as usize,
        Value::String(text) => {
            let percent: usize = text.trim_end_matches('%').parse().unwrap_or(25);
            let scaled = total * percent;
            if round_up {
                scaled.div_ceil(100)
            } else {
                scaled / 100
            }
        }
        _ => resolve(&json!("25%"), total, round_up),
    }
}

/// Recreate: every old pod gone before the new ReplicaSet scales up.
fn recreate(owned: &mut [Owned], new_index: usize, desired: usize) {
    let mut old_pods = 0;
    for (index, rs) in owned.iter_mut().enumerate() {
        if index != new_index {
            rs.replicas = 0;
            old_pods += rs.pods;
        }
    }
    if old_pods == 0 {
        owned[new_index].replicas = desired;
    }
}

/// RollingUpdate as Kubernetes' `rolloutRolling`: scale the new
/// ReplicaSet up as far as maxSurge allows, then the old ones down as far
/// as maxUnavailable allows (pods that are not available first).
fn rolling_update(owned: &mut [Owned], new_index: usize, desired: usize, strategy: &Value) {
    let surge = resolve(&strategy["maxSurge"], desired, true);
    let mut unavailable = resolve(&strategy["maxUnavailable"], desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    // Up: the new ReplicaSet, within desired + surge pods in all.
    let total: usize = owned.iter().map(|rs| rs.replicas).sum();
    let new = &mut owned[new_index];
    if new.replicas > desired {
        new.replicas = desired;
    } else if new.replicas < desired {
        let room = (desired + surge).saturating_sub(total);
        new.replicas = (new.replicas + room).min(desired);
    }
    // Down: the old ones, keeping desired - unavailable available.
    let min_available = desired.saturating_sub(unavailable);
    let total: usize = owned.iter().map(|rs| rs.replicas).sum();
    let new_unavailable = owned[new_index]
        .replicas
        .saturating_sub(owned[new_index].available);
    let mut budget = total as i64 - min_available as i64 - new_unavailable as i64;
    if budget <= 0 {
        return;
    }
    for (index, rs) in owned.iter_mut().enumerate() {
        if index == new_index || budget == 0 {
            continue;
        }
        let unhealthy = rs.replicas.saturating_sub(rs.available) as i64;
        let cut = unhealthy.min(budget);
        rs.replicas -= cut as usize;
        budget -= cut;
    }
    let available: usize = owned.iter().map(|rs| rs.available.min(rs.replicas)).sum();
    let mut scale_down = available.saturating_sub(min_available);
    for (index, rs) in owned.iter_mut().enumerate() {
        if index == new_index || scale_down == 0 {
            continue;
        }
        let cut = rs.replicas.min(scale_down);
        rs.replicas -= cut;
        scale_down -= cut;
    }
}

/// A condition, keeping its transition time when its status is unchanged.
fn condition(previous: &Value, kind: &str, status: bool, reason: &str, message: String) -> Value {
    let status = if status { "True" } else { "False" };
    let old = previous["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == kind));
    let same = old.is_some_and(|old| old["status"] == status && old["reason"] == reason);
    let (updated, transitioned) = match old {
        Some(old) if same => (
            old["lastUpdateTime"].clone(),
            old["lastTransitionTime"].clone(),
        ),
        _ => (meta::now(), meta::now()),
    };
    json!({
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": updated,
        "lastTransitionTime": transitioned,
    })
}

async fn write_status(
    context: &Context,
    deployment: &Value,
    owned: &[Owned],
    new_index: usize,
    desired: usize,
) -> Result<bool, ControllerError> {
    let new = &owned[new_index];
    let replicas: usize = owned.iter().map(|rs| rs.active).sum();
    let available: usize = owned.iter().map(|rs| rs.available).sum();
    let unavailable_allowed = resolve(
        &deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        desired,
        false,
    );
    let previous = &deployment["status"];
    let complete = new.active == desired && replicas == desired && new.available == desired;
    let new_name = meta::name(&new.replica_set);
    let (reason, message) = if complete {
        (
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
        )
    } else {
        (
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
        )
    };
    let minimum = available >= desired.saturating_sub(unavailable_allowed);
    let available_condition = if minimum {
        condition(
            previous,
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        )
    } else {
        condition(
            previous,
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        )
    };
    let status = json!({
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": new.active,
        "readyReplicas": available,
        "availableReplicas": available,
        "unavailableReplicas": desired.saturating_sub(available),
        "conditions": [
            available_condition,
            condition(previous, "Progressing", true, reason, message),
        ],
    });
    if &status == previous {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: usize, available: usize) -> Owned {
        Owned {
            replica_set: json!({}),
            replicas,
            active: replicas,
            available,
            pods: replicas,
        }
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        assert_eq!(resolve(&Value::Null, 4, true), 1);
        assert_eq!(resolve(&Value::Null, 4, false), 1);
        assert_eq!(resolve(&json!("25%"), 3, true), 1);
        assert_eq!(resolve(&json!("25%"), 3, false), 0);
        assert_eq!(resolve(&json!(2), 10, false), 2);
    }

    #[test]
    fn rolling_update_stays_within_surge_and_unavailable() {
        // 4 wanted, 25%: one extra pod, one unavailable.
        let mut owned = [rs(4, 4), rs(0, 0)];
        rolling_update(&mut owned, 1, 4, &Value::Null);
        assert_eq!((owned[0].replicas, owned[1].replicas), (3, 1));
        // The old pod has gone: one more new one, no old one while the
        // new ones are not ready.
        owned[0].available = 3;
        rolling_update(&mut owned, 1, 4, &Value::Null);
        assert_eq!((owned[0].replicas, owned[1].replicas), (3, 2));
        owned[1].available = 2;
        rolling_update(&mut owned, 1, 4, &Value::Null);
        assert_eq!((owned[0].replicas, owned[1].replicas), (1, 2));
    }

    #[test]
    fn recreate_waits_for_old_pods() {
        let mut owned = [rs(3, 3), rs(0, 0)];
        recreate(&mut owned, 1, 3);
        assert_eq!((owned[0].replicas, owned[1].replicas), (0, 0));
        owned[0].pods = 0;
        recreate(&mut owned, 1, 3);
        assert_eq!(owned[1].replicas, 3);
    }
}
