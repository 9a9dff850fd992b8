//! One pod on this node, from its sandbox (address, netns, cgroup) through
//! its containers to its graceful end: on `deletionTimestamp` every
//! container gets SIGTERM and the grace period, then the sandbox goes and
//! the pod is deleted through the API server with gracePeriodSeconds 0 and
//! its uid and resourceVersion as preconditions, which is how the API
//! server expects a node to finish a graceful delete.
use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, Preconditions};
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    cgroup,
    context::Context,
    ipam::Holder,
    names,
    netns::Sandbox,
    oci,
    pod_key::PodKey,
    resolv,
    runtime::{PodRuntime, grace_of},
    sequence,
    status::{ContainerStatus, Kind, PodState},
    status_writer::{self, Stored, revision},
};
use crate::apiserver::{is_conflict, is_not_found};
use crate::kubelet::{store::now_rfc3339, volumes};

const SANDBOX_RETRY: Duration = Duration::from_secs(5);

fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Runs the pod until it is deleted (`updates` says `None`) or marked for
/// deletion, then cleans up.
pub async fn run(ctx: Arc<Context>, key: PodKey, mut updates: watch::Receiver<Option<Pod>>) {
    let Some(pod) = updates.borrow_and_update().clone() else {
        return;
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let holder = Holder {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        uid: uid.clone(),
    };
    // Paths and ids are built from the names: a bad one runs nothing.
    if let Err(error) = names::check(&key.namespace, &pod) {
        warn!(pod = %key, %error, "refusing the pod");
        write_pending(&ctx, &key, &pod, &updates, error.to_string()).await;
        let end = ended(&mut updates).await;
        if let Ended::Deleting(_) = end {
            delete_pod(&ctx, &key, &uid, &mut updates).await;
        }
        return;
    }
    // A pod that finished before an agent restart is not run again.
    if pod.metadata.deletion_timestamp.is_none() && !finished(&pod) {
        let sandbox = loop {
            match sandbox(&ctx, &key, &holder, &pod) {
                Ok(sandbox) => break sandbox,
                Err(error) => {
                    warn!(pod = %key, %error, "creating the pod sandbox failed; retrying");
                    write_pending(&ctx, &key, &pod, &updates, error).await;
                    tokio::select! {
                        () = tokio::time::sleep(SANDBOX_RETRY) => continue,
                        end = ended(&mut updates) => {
                            cleanup(&ctx, &key, &uid, None, end, &mut updates).await;
                            return;
                        }
                    }
                }
            }
        };
        let state = initial_state(&ctx, &pod, &sandbox);
        let runtime = Arc::new(PodRuntime::new(
            ctx.clone(),
            key.clone(),
            uid.clone(),
            pod,
            sandbox.clone(),
            state,
        ));
        info!(pod = %key, ip = %sandbox.ip, netns = %sandbox.netns, "pod sandbox ready");
        let writer = tokio::spawn(status_writer::run(
            runtime.clone(),
            Stored::new(updates.clone()),
        ));
        let refresher = tokio::spawn(volumes::refresh_until_stopped(
            runtime.volumes.clone(),
            ctx.api.clone(),
            ctx.api.clone(),
            runtime.events.clone(),
            volumes::REFRESH_PERIOD,
        ));
        let (stop_tx, stop_rx) = watch::channel(None);
        let containers = tokio::spawn(sequence::run(runtime.clone(), stop_rx));
        let end = ended(&mut updates).await;
        let grace = match &end {
            Ended::Deleting(pod) => grace_of(pod),
            Ended::Gone => Duration::ZERO,
        };
        info!(pod = %key, ?grace, "stopping the pod");
        let _ = stop_tx.send(Some(grace));
        let _ = containers.await;
        writer.abort();
        refresher.abort();
        cleanup(&ctx, &key, &uid, Some(&sandbox), end, &mut updates).await;
        return;
    }
    let end = ended(&mut updates).await;
    cleanup(&ctx, &key, &uid, None, end, &mut updates).await;
}

fn sandbox(ctx: &Context, key: &PodKey, holder: &Holder, pod: &Pod) -> Result<Sandbox, String> {
    let ip = ctx
        .ipam
        .allocate(holder)
        .map_err(|e| format!("allocating a pod address: {e}"))?;
    let netns = key.netns(&ctx.config.netns_prefix);
    let sandbox = Sandbox::of(netns, ip, &ctx.plumbing.pod_cidrs);
    if let Err(error) = sandbox.ensure(&ctx.plumbing) {
        ctx.ipam.release(ip);
        return Err(error.to_string());
    }
    (ctx.containers.pod_files(&key.slug()))
        .ensure(
            &key.name,
            ip,
            &resolv::resolv_conf(pod, &key.namespace, &ctx.config.dns),
        )
        .map_err(|e| format!("writing the pod's /etc files and namespaces: {e}"))?;
    Ok(sandbox)
}

fn initial_state(ctx: &Context, pod: &Pod, sandbox: &Sandbox) -> PodState {
    let stored = serde_json::to_value(&pod.status).unwrap_or_default();
    let initialized = !has_init_containers(pod)
        || (stored["conditions"].as_array().into_iter().flatten())
            .any(|c| c["type"] == "Initialized" && c["status"] == "True");
    PodState {
        host_ip: ctx.config.node_ip,
        pod_ip: Some(sandbox.ip),
        pod_ip6: sandbox.ip6,
        start_time: stored["startTime"]
            .as_str()
            .map_or_else(now_rfc3339, str::to_owned),
        sandbox_error: None,
        initialized,
        containers: statuses(pod, &stored, initialized),
    }
}

/// The pod's containers about to start, init containers first, carrying on
/// what an earlier agent stored of them. App containers of a pod not yet
/// `initialized` wait for the init containers as `PodInitializing`.
fn statuses(pod: &Pod, stored: &serde_json::Value, initialized: bool) -> Vec<ContainerStatus> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let init = spec.init_containers.iter().flatten();
    let reason = match initialized {
        true => "ContainerCreating",
        false => "PodInitializing",
    };
    let before = |list: &str, name: &str| {
        (stored[list].as_array().into_iter().flatten()).find(|p| p["name"] == name)
    };
    let init = init.map(|c| {
        let previous = before("initContainerStatuses", &c.name);
        ContainerStatus::new(c, Kind::of_init(c), "PodInitializing", previous)
    });
    let apps = (spec.containers.iter()).map(|c| {
        let previous = before("containerStatuses", &c.name);
        ContainerStatus::new(c, Kind::App, reason, previous)
    });
    init.chain(apps).collect()
}

fn has_init_containers(pod: &Pod) -> bool {
    (pod.spec.as_ref()).is_some_and(|s| s.init_containers.as_ref().is_some_and(|i| !i.is_empty()))
}

/// Writes the status of a pod whose sandbox failed: Pending, with why.
async fn write_pending(
    ctx: &Context,
    key: &PodKey,
    pod: &Pod,
    updates: &watch::Receiver<Option<Pod>>,
    error: String,
) {
    let initialized = !has_init_containers(pod);
    let state = PodState {
        host_ip: ctx.config.node_ip,
        pod_ip: None,
        pod_ip6: None,
        start_time: now_rfc3339(),
        sandbox_error: Some(error),
        initialized,
        containers: statuses(pod, &serde_json::Value::Null, initialized),
    };
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let mut stored = Stored::new(updates.clone());
    let render = |stored: &serde_json::Value| state.render(stored);
    if let Err(error) = status_writer::write(ctx, key, uid, &mut stored, render).await {
        warn!(pod = %key, %error, "writing the pending pod's status failed");
    }
}

/// How a pod's run ends.
enum Ended {
    /// Marked for deletion: the key is deleted once the pod is down.
    Deleting(Box<Pod>),
    /// Its key is gone already.
    Gone,
}

async fn ended(updates: &mut watch::Receiver<Option<Pod>>) -> Ended {
    loop {
        match &*updates.borrow_and_update() {
            None => return Ended::Gone,
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                return Ended::Deleting(Box::new(pod.clone()));
            }
            Some(_) => {}
        }
        if updates.changed().await.is_err() {
            return Ended::Gone;
        }
    }
}

/// Removes everything the pod had on the node, then (when it was being
/// deleted) the pod itself.
async fn cleanup(
    ctx: &Context,
    key: &PodKey,
    uid: &str,
    sandbox: Option<&Sandbox>,
    end: Ended,
    updates: &mut watch::Receiver<Option<Pod>>,
) {
    remove_local(ctx, key, uid, sandbox).await;
    if let Ended::Deleting(_) = end {
        delete_pod(ctx, key, uid, updates).await;
    }
}

/// The pod's containers, cgroup, netns, veth, address, volumes and logs.
pub async fn remove_local(ctx: &Context, key: &PodKey, uid: &str, sandbox: Option<&Sandbox>) {
    let prefix = oci::pod_prefix(&key.namespace, &key.name);
    let files = ctx.containers.pod_files(&key.slug());
    ctx.containers.remove_pod(&prefix, &files).await;
    cgroup::remove_pod(&ctx.pods_root, &key.slug()).await;
    let netns = key.netns(&ctx.config.netns_prefix);
    for (ip, holder) in ctx.ipam.held() {
        if holder.namespace == key.namespace && holder.name == key.name {
            Sandbox::of(netns.clone(), ip, &ctx.plumbing.pod_cidrs).remove();
            ctx.ipam.release(ip);
        }
    }
    if let Some(sandbox) = sandbox {
        sandbox.remove();
    }
    if let Err(error) = volumes::remove_pod(&ctx.config.state_dir, uid) {
        warn!(pod = %key, %error, "removing the pod's volumes failed; they stay on the node");
    }
    ctx.logs.remove_pod(&key.namespace, &key.name);
    info!(pod = %key, "pod removed from the node");
}

/// Deletes the pod at once (its containers are down), with the uid and
/// resourceVersion of the newest pod the watch has as preconditions; after a
/// conflict, again once the watch has a newer one.
async fn delete_pod(
    ctx: &Context,
    key: &PodKey,
    uid: &str,
    updates: &mut watch::Receiver<Option<Pod>>,
) {
    let pods: kube::Api<Pod> = kube::Api::namespaced(ctx.api.clone(), &key.namespace);
    for _ in 0..10 {
        let seen = match &*updates.borrow_and_update() {
            Some(pod) if pod.metadata.uid.as_deref() == Some(uid) => revision(pod),
            _ => return,
        };
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: Some(seen.to_string()),
            }),
            ..DeleteParams::default()
        };
        match pods.delete(&key.name, &params).await {
            Ok(_) => {
                info!(pod = %key, "pod deleted");
                return;
            }
            Err(error) if is_not_found(&error) => return,
            Err(error) if is_conflict(&error) => {
                let newer = |pod: &Option<Pod>| pod.as_ref().is_none_or(|pod| revision(pod) > seen);
                if updates.wait_for(newer).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                warn!(pod = %key, %error, "deleting the pod failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
