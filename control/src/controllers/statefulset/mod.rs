//! The StatefulSet controller, after pkg/controller/statefulset: pods with
//! stable names and claims (`identity`), created, deleted and replaced in
//! the order the pod management policy and update strategy ask (`plan`),
//! each template recorded as a ControllerRevision (`revision`), and a
//! status that `kubectl rollout status` reads.

mod identity;
mod plan;
mod revision;

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use tracing::{info, warn};

use super::client::{ClientError, written};
use super::kind::Kind;
use super::{Context, Controller, ControllerError, events, meta};
use identity::{claim_templates, ordinal_of, pod_name, pod_revision};
use plan::{Action, PodState, Policy, Slot};
use revision::Choice;

const COMPONENT: &str = "statefulset-controller";

pub struct StatefulSets;

impl Controller for StatefulSets {
    const NAME: &'static str = "statefulset";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let mut written = Vec::new();
        let mut failed = None;
        for set in context.cache.list(Kind::StatefulSet) {
            if meta::is_terminating(&set) {
                continue;
            }
            // One set's failure (a pod the API refuses) holds up no other;
            // the pass still fails, so it is retried after a pause.
            match reconcile_one(context, &set).await {
                Ok(kinds) => written.extend(kinds),
                Err(error) => {
                    warn!(statefulset = meta::name(&set), %error, "not reconciled");
                    failed = Some(error);
                }
            }
        }
        if let Some(error) = failed {
            return Err(error);
        }
        written.sort();
        written.dedup();
        Ok(written)
    }
}

/// The revisions a pass works with.
struct Revisions {
    current: Value,
    update: Value,
}

async fn reconcile_one(context: &Context, set: &Value) -> Result<Vec<Kind>, ControllerError> {
    let namespace = meta::namespace(set);
    let owned = |kind| -> Vec<Value> {
        context
            .cache
            .list_in(kind, namespace)
            .into_iter()
            .filter(|object| meta::controlled_by(object, meta::uid(set)))
            .collect()
    };
    let revisions = owned(Kind::ControllerRevision);
    let Some(chosen) = ensure_update_revision(context, set, &revisions).await? else {
        return Ok(vec![Kind::ControllerRevision, Kind::StatefulSet]);
    };
    let pods: HashMap<i64, Value> = owned(Kind::Pod)
        .into_iter()
        .filter_map(|pod| Some((ordinal_of(set, meta::name(&pod))?, pod)))
        .collect();
    let start = set["spec"]["ordinals"]["start"].as_i64().unwrap_or(0);
    let replicas = set["spec"]["replicas"].as_i64().unwrap_or(1);
    let wanted: Vec<i64> = (start..start + replicas).collect();
    let update_name = meta::name(&chosen.update);
    let slot = |ordinal: i64| Slot {
        ordinal,
        state: pods.get(&ordinal).map_or(PodState::Missing, pod_state),
        updated: pods
            .get(&ordinal)
            .is_some_and(|pod| pod_revision(pod) == update_name),
    };
    let wanted_slots: Vec<Slot> = wanted.iter().map(|&ordinal| slot(ordinal)).collect();
    let condemned: Vec<Slot> = pods
        .keys()
        .filter(|ordinal| !wanted.contains(ordinal))
        .map(|&ordinal| slot(ordinal))
        .collect();
    let mut written = Vec::new();
    if own_claims(context, set, &pods, &wanted).await? {
        written.push(Kind::PersistentVolumeClaim);
    }
    let policy = policy(set);
    for action in plan::plan(&wanted_slots, &condemned, policy) {
        match action {
            Action::Create(ordinal) => {
                // Below the partition a returning pod keeps the current revision.
                let index = usize::try_from(ordinal - start).unwrap_or(0);
                let revision = match policy.partition {
                    Some(partition) if index < partition => &chosen.current,
                    _ => &chosen.update,
                };
                if create_pod(context, set, revision, ordinal).await? {
                    written.extend([Kind::Pod, Kind::PersistentVolumeClaim]);
                }
            }
            Action::Delete(ordinal) => {
                if let Some(pod) = pods.get(&ordinal) {
                    delete_pod(context, set, pod).await?;
                    written.push(Kind::Pod);
                }
            }
        }
    }
    let live: HashSet<&str> = pods
        .values()
        .map(pod_revision)
        .chain([meta::name(&chosen.current), update_name])
        .collect();
    let limit = set["spec"]["revisionHistoryLimit"].as_u64().unwrap_or(10) as usize;
    for old in revision::to_trim(&revisions, &live, limit) {
        context
            .client
            .delete(Kind::ControllerRevision, old, None)
            .await?;
        written.push(Kind::ControllerRevision);
    }
    if write_status(context, set, &pods, &wanted, &chosen).await? {
        written.push(Kind::StatefulSet);
    }
    Ok(written)
}

fn policy(set: &Value) -> Policy {
    let spec = &set["spec"];
    let rolling = spec["updateStrategy"]["type"] != "OnDelete";
    Policy {
        ordered: spec["podManagementPolicy"] != "Parallel",
        partition: rolling.then(|| {
            spec["updateStrategy"]["rollingUpdate"]["partition"]
                .as_u64()
                .unwrap_or(0) as usize
        }),
    }
}

fn pod_state(pod: &Value) -> PodState {
    if meta::is_terminating(pod) {
        PodState::Terminating
    } else if meta::pod_finished(pod) {
        PodState::Finished
    } else if pod["status"]["phase"] == "Running" && meta::pod_ready(pod) {
        PodState::Healthy
    } else {
        PodState::Starting
    }
}

/// Makes sure a revision holds the set's template and is the newest;
/// returns the current and update revisions, or `None` when it wrote
/// (a new revision, or a name collision counted in the status) and the
/// next pass goes on.
async fn ensure_update_revision(
    context: &Context,
    set: &Value,
    revisions: &[Value],
) -> Result<Option<Revisions>, ControllerError> {
    let template = &set["spec"]["template"];
    let data = revision::data(template);
    let update = match revision::choose(revisions, &data) {
        Choice::Existing(revision) => revision.clone(),
        Choice::Renumber(revision, number) => {
            let mut renumbered = revision.clone();
            renumbered["revision"] = json!(number);
            written(
                context
                    .client
                    .update(Kind::ControllerRevision, &renumbered)
                    .await,
            )?;
            return Ok(None);
        }
        Choice::New(number) => {
            create_revision(context, set, template, data, number).await?;
            return Ok(None);
        }
    };
    let current = set["status"]["currentRevision"]
        .as_str()
        .and_then(|name| revisions.iter().find(|r| meta::name(r) == name))
        .cloned()
        .unwrap_or_else(|| update.clone());
    Ok(Some(Revisions { current, update }))
}

async fn create_revision(
    context: &Context,
    set: &Value,
    template: &Value,
    data: Value,
    number: i64,
) -> Result<(), ControllerError> {
    let collisions = set["status"]["collisionCount"].as_i64().unwrap_or(0);
    let hash = revision::hash(&data, collisions);
    let name = format!("{}-{hash}", meta::name(set));
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": name,
            "namespace": meta::namespace(set),
            "labels": identity::revision_labels(template, &hash),
            "annotations": set["metadata"]["annotations"],
            "ownerReferences": [meta::controller_reference(set)],
        },
        "data": data,
        "revision": number,
    });
    match context
        .client
        .create(Kind::ControllerRevision, Some(meta::namespace(set)), &body)
        .await
    {
        Ok(_) => {
            info!(
                statefulset = meta::name(set),
                revision = name,
                "created revision"
            );
            Ok(())
        }
        // The name is another template's: the next name comes from one
        // more collision.
        Err(error) if error.code == 409 => {
            let mut counted = set.clone();
            counted["status"]["collisionCount"] = json!(collisions + 1);
            written(
                context
                    .client
                    .update_status(Kind::StatefulSet, &counted)
                    .await,
            )?;
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

/// Creates the pod of `ordinal` from `revision`, its claims first; whether
/// it wrote. A claim being deleted holds the pod back until it is gone.
async fn create_pod(
    context: &Context,
    set: &Value,
    revision: &Value,
    ordinal: i64,
) -> Result<bool, ControllerError> {
    let namespace = meta::namespace(set);
    let name = pod_name(set, ordinal);
    for claim_template in claim_templates(set) {
        let claim_name = identity::claim_name(claim_template, set, ordinal);
        match context
            .cache
            .get(Kind::PersistentVolumeClaim, Some(namespace), &claim_name)
        {
            Some(claim) if meta::is_terminating(&claim) => {
                info!(
                    pod = name,
                    claim = claim_name,
                    "claim being deleted: waiting"
                );
                return Ok(false);
            }
            Some(_) => {}
            None => {
                let claim = identity::claim(set, claim_template, ordinal);
                let result = context
                    .client
                    .create(Kind::PersistentVolumeClaim, Some(namespace), &claim)
                    .await;
                let subject = format!("Claim {claim_name} Pod {name}");
                let error = result.as_ref().err();
                record(context, set, "Create", &subject, "success", error).await;
                result?;
            }
        }
    }
    let pod = identity::pod(
        set,
        &revision::template(revision),
        meta::name(revision),
        ordinal,
    );
    let result = context
        .client
        .create(Kind::Pod, Some(namespace), &pod)
        .await;
    let subject = format!("Pod {name}");
    let error = result.as_ref().err();
    record(context, set, "Create", &subject, "successful", error).await;
    result?;
    Ok(true)
}

async fn delete_pod(context: &Context, set: &Value, pod: &Value) -> Result<(), ControllerError> {
    let result = context.client.delete(Kind::Pod, pod, None).await;
    let subject = format!("Pod {}", meta::name(pod));
    let error = result.as_ref().err();
    record(context, set, "Delete", &subject, "successful", error).await;
    Ok(result?)
}

/// `SuccessfulCreate`/`FailedCreate` (or Delete) on the set, worded as
/// upstream's `StatefulPodControl` words them: "create Pod web-0 in
/// StatefulSet web successful" (claims say `success`).
async fn record(
    context: &Context,
    set: &Value,
    verb: &str,
    subject: &str,
    success: &str,
    error: Option<&ClientError>,
) {
    let outcome = error.map_or_else(
        || success.to_owned(),
        |error| format!("failed error: {}", error.message),
    );
    let message = format!(
        "{} {subject} in StatefulSet {} {outcome}",
        verb.to_lowercase(),
        meta::name(set)
    );
    let (kind, reason) = match error {
        None => ("Normal", format!("Successful{verb}")),
        Some(_) => ("Warning", format!("Failed{verb}")),
    };
    events::record(
        context,
        set,
        "StatefulSet",
        kind,
        &reason,
        &message,
        COMPONENT,
    )
    .await;
}

/// Sets each existing claim's owners as the retention policy asks (the
/// pod of a condemned ordinal owns its claims under `whenScaled: Delete`);
/// whether it wrote.
async fn own_claims(
    context: &Context,
    set: &Value,
    pods: &HashMap<i64, Value>,
    wanted: &[i64],
) -> Result<bool, ControllerError> {
    let namespace = meta::namespace(set);
    let mut wrote = false;
    for (&ordinal, pod) in pods {
        let condemned = (!wanted.contains(&ordinal)).then_some(pod);
        for claim_template in claim_templates(set) {
            let claim_name = identity::claim_name(claim_template, set, ordinal);
            let Some(claim) =
                context
                    .cache
                    .get(Kind::PersistentVolumeClaim, Some(namespace), &claim_name)
            else {
                continue;
            };
            let current = identity::owners(&claim);
            let owners = identity::claim_owners(set, condemned, current);
            if owners.as_slice() != current && !meta::is_terminating(&claim) {
                let mut updated = claim.clone();
                updated["metadata"]["ownerReferences"] = json!(owners);
                wrote |= written(
                    context
                        .client
                        .update(Kind::PersistentVolumeClaim, &updated)
                        .await,
                )?;
            }
        }
    }
    Ok(wrote)
}

/// Writes the status when it changed; whether it wrote.
async fn write_status(
    context: &Context,
    set: &Value,
    pods: &HashMap<i64, Value>,
    wanted: &[i64],
    chosen: &Revisions,
) -> Result<bool, ControllerError> {
    let (current_name, update_name) = (meta::name(&chosen.current), meta::name(&chosen.update));
    let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let live: Vec<&Value> = pods
        .values()
        .filter(|pod| !meta::is_terminating(pod))
        .collect();
    let count = |keep: &dyn Fn(&Value) -> bool| live.iter().filter(|pod| keep(pod)).count() as i64;
    let replicas = live.len() as i64;
    let ready = count(&|pod| pod_state(pod) == PodState::Healthy);
    let available =
        count(&|pod| pod_state(pod) == PodState::Healthy && available_for(pod, min_ready));
    let mut current = count(&|pod| pod_revision(pod) == current_name);
    let updated = count(&|pod| pod_revision(pod) == update_name);
    let mut current_revision = current_name;
    // The rollout is complete once every wanted pod runs the update.
    let all_updated = wanted.iter().all(|ordinal| {
        pods.get(ordinal).is_some_and(|pod| {
            pod_revision(pod) == update_name && pod_state(pod) == PodState::Healthy
        })
    });
    if all_updated && updated == replicas {
        current_revision = update_name;
        current = updated;
    }
    let mut status = set["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["observedGeneration"] = set["metadata"]["generation"].clone();
    status["replicas"] = json!(replicas);
    status["readyReplicas"] = json!(ready);
    status["availableReplicas"] = json!(available);
    status["currentReplicas"] = json!(current);
    status["updatedReplicas"] = json!(updated);
    status["currentRevision"] = json!(current_revision);
    status["updateRevision"] = json!(update_name);
    status["collisionCount"] = json!(status["collisionCount"].as_i64().unwrap_or(0));
    if status == set["status"] {
        return Ok(false);
    }
    let mut updated_set = set.clone();
    updated_set["status"] = status;
    Ok(written(
        context
            .client
            .update_status(Kind::StatefulSet, &updated_set)
            .await,
    )?)
}

/// Ready for at least `min_ready` seconds.
fn available_for(pod: &Value, min_ready: i64) -> bool {
    if min_ready <= 0 {
        return true;
    }
    let since = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|condition| condition["type"] == "Ready")
        .and_then(|condition| meta::parse_time(&condition["lastTransitionTime"]));
    since.is_some_and(|since| meta::timestamp_now().as_second() - since.as_second() >= min_ready)
}
