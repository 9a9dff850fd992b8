//! Pods on this node (`--run-pods`): the agent watches the pods bound to
//! it in etcd and runs each pod's containers with runc from the node's
//! image store, in the pod's netns and cgroups below `--cgroup`
//! (`worker`, `container`, `oci`), reporting their status back to etcd.
pub mod cgroup;
mod container;
mod context;
mod env;
pub mod exec;
mod hooks;
mod init;
pub mod ipam;
pub mod logs;
pub mod loopback;
pub mod names;
mod netns;
pub mod oci;
pub mod pod_key;
mod probes;
mod resolv;
mod runtime;
mod security;
mod sequence;
mod sidecars;
mod statfs;
mod status;
mod status_writer;
mod termination;
mod watch;
mod worker;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::api::core::v1::Pod;
use tokio::{
    sync::{mpsc, watch as channel},
    task::JoinHandle,
};

pub use context::{Config, Context};
pub use logs::Logs;
pub use netns::{BridgeAddress, Plumbing};
pub use resolv::Dns;

use self::{pod_key::PodKey, watch::PodEvent};

struct Worker {
    uid: String,
    updates: channel::Sender<Option<Pod>>,
    task: JoinHandle<()>,
}

/// Runs this node's pods until the agent stops (the pods keep running
/// then, and the next agent adopts them).
pub async fn run(ctx: Arc<Context>, endpoints: Vec<String>) {
    let (tx, mut events) = mpsc::channel(64);
    tokio::spawn(watch::run(endpoints, ctx.config.node_name.clone(), tx));
    let mut workers: HashMap<PodKey, Worker> = HashMap::new();
    // Pods whose worker finished: a late event for them starts nothing.
    let mut done: HashSet<String> = HashSet::new();
    let mut first = true;
    while let Some(event) = events.recv().await {
        workers.retain(|_, worker| {
            let finished = worker.task.is_finished();
            if finished {
                done.insert(worker.uid.clone());
            }
            !finished
        });
        match event {
            PodEvent::Resync(pods) => {
                let keys: HashSet<PodKey> = pods.iter().map(|(key, _)| key.clone()).collect();
                if first {
                    remove_orphans(&ctx, &pods).await;
                    first = false;
                }
                // Only uids etcd still holds can come back in a late event.
                let live: HashSet<&str> = (pods.iter())
                    .filter_map(|(_, pod)| pod.metadata.uid.as_deref())
                    .collect();
                done.retain(|uid| live.contains(uid.as_str()));
                for (key, pod) in pods {
                    upsert(&ctx, &mut workers, &done, key, pod);
                }
                for (key, worker) in &workers {
                    if !keys.contains(key) {
                        worker.updates.send_replace(None);
                    }
                }
            }
            PodEvent::Changes(changes) => {
                for (key, pod) in changes {
                    match pod {
                        Some(pod) => upsert(&ctx, &mut workers, &done, key, *pod),
                        None => {
                            if let Some(worker) = workers.get(&key) {
                                worker.updates.send_replace(None);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn upsert(
    ctx: &Arc<Context>,
    workers: &mut HashMap<PodKey, Worker>,
    done: &HashSet<String>,
    key: PodKey,
    pod: Pod,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if done.contains(&uid) {
        return;
    }
    let previous = match workers.remove(&key) {
        Some(worker) if worker.uid == uid => {
            worker.updates.send_replace(Some(pod));
            workers.insert(key, worker);
            return;
        }
        Some(worker) => {
            // Same name, new pod: the old one goes first (it holds the
            // names the new one needs).
            worker.updates.send_replace(None);
            Some(worker.task)
        }
        None => None,
    };
    let (updates, receiver) = channel::channel(Some(pod));
    let ctx = ctx.clone();
    let worker_key = key.clone();
    let task = tokio::spawn(async move {
        if let Some(previous) = previous {
            let _ = previous.await;
        }
        worker::run(ctx, worker_key, receiver).await;
    });
    workers.insert(key, Worker { uid, updates, task });
}

/// What an earlier agent left for pods that are no longer on this node.
async fn remove_orphans(ctx: &Context, pods: &[(PodKey, Pod)]) {
    let live: HashSet<&str> = pods
        .iter()
        .filter_map(|(_, pod)| pod.metadata.uid.as_deref())
        .collect();
    for (_, holder) in ctx.ipam.held() {
        if !live.contains(holder.uid.as_str()) {
            let key = PodKey {
                namespace: holder.namespace,
                name: holder.name,
            };
            tracing::info!(pod = %key, "removing what is left of a pod no longer on this node");
            worker::remove_local(ctx, &key, &holder.uid, None).await;
        }
    }
    crate::kubelet::volumes::remove_orphans(&ctx.config.state_dir, &live);
}
