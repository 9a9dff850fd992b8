//! A stand-in for the node agents in the control-plane tests: registers
//! Ready Nodes, renews their Leases in kube-node-lease, and for the pods
//! bound to them writes status (Running, an IP, Ready after a delay; a
//! finished pod stays finished) and removes the ones marked for deletion —
//! all directly in etcd, as the agent does.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use super::*;
use crate::store::{Preconditions, Store, StoreError, resource_version_of};

pub struct Kubelet {
    store: Store,
    alive: Arc<Mutex<BTreeSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const TICK: Duration = Duration::from_millis(100);

impl Kubelet {
    /// Registers `nodes` (the n-th with pod CIDR 10.244.n.0/24 and address
    /// 127.0.0.n, 4 CPUs, 8Gi) and runs them; pods turn Ready
    /// `ready_after` after they are bound.
    pub async fn start(cluster: &Cluster, nodes: &[&str], ready_after: Duration) -> Self {
        let store = cluster.etcd.store().await;
        for (index, name) in nodes.iter().enumerate() {
            let (code, body) = cluster
                .send_json("POST", "/api/v1/nodes", &node(name, index + 1))
                .await;
            assert_eq!(code, 201, "{body}");
        }
        let alive = Arc::new(Mutex::new(nodes.iter().map(|n| n.to_string()).collect()));
        let indices: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .map(|(index, name)| (name.to_string(), index + 1))
            .collect();
        let task = tokio::spawn(run(store.clone(), alive.clone(), indices, ready_after));
        Self { store, alive, task }
    }

    /// Stops `node`'s agent: no more lease renewals, pod updates or
    /// deletions there.
    pub fn stop(&self, node: &str) {
        self.alive.lock().unwrap().remove(node);
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn node(name: &str, index: usize) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name, "topology.kubernetes.io/zone": format!("zone-{index}") } },
        "spec": { "podCIDR": format!("10.244.{index}.0/24"), "podCIDRs": [format!("10.244.{index}.0/24")] },
        "status": {
            "addresses": [{ "type": "InternalIP", "address": format!("127.0.0.{index}") }],
            "capacity": { "cpu": "4", "memory": "8Gi", "pods": "110" },
            "allocatable": { "cpu": "4", "memory": "8Gi", "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": "2026-01-01T00:00:00Z" }],
        },
    })
}

async fn run(
    store: Store,
    alive: Arc<Mutex<BTreeSet<String>>>,
    indices: HashMap<String, usize>,
    ready_after: Duration,
) {
    let mut bound_at: HashMap<String, Instant> = HashMap::new();
    let mut next_ip: HashMap<String, usize> = HashMap::new();
    loop {
        let nodes = alive.lock().unwrap().clone();
        for node in &nodes {
            let _ = renew_lease(&store, node).await;
        }
        let pods = store
            .list("/registry/pods/", Default::default(), |_| true)
            .await
            .map(|page| page.items)
            .unwrap_or_default();
        for pod in pods {
            let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
            if !nodes.contains(node) {
                continue;
            }
            let key = format!(
                "/registry/pods/{}/{}",
                pod["metadata"]["namespace"].as_str().unwrap(),
                pod["metadata"]["name"].as_str().unwrap()
            );
            if !pod["metadata"]["deletionTimestamp"].is_null() {
                let _ = store.delete(&key, &Preconditions::default()).await;
                continue;
            }
            // A pod that ran to completion stays as it ended.
            if matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            ) {
                continue;
            }
            let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
            let since = *bound_at.entry(uid).or_insert_with(Instant::now);
            let ready = since.elapsed() >= ready_after;
            let running = pod["status"]["phase"] == "Running";
            let was_ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if running && was_ready == ready {
                continue;
            }
            let ip = match pod["status"]["podIP"].as_str() {
                Some(ip) => ip.to_owned(),
                None => {
                    let count = next_ip.entry(node.to_owned()).or_insert(1);
                    *count += 1;
                    format!("10.244.{}.{count}", indices[node])
                }
            };
            let status = if ready { "True" } else { "False" };
            let mut updated = pod.clone();
            updated["status"] = json!({
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{ "ip": ip }],
                "hostIP": format!("127.0.0.{}", indices[node]),
                "conditions": [
                    { "type": "PodScheduled", "status": "True" },
                    { "type": "ContainersReady", "status": status },
                    { "type": "Ready", "status": status },
                ],
            });
            let _ = store
                .update(&key, &updated, resource_version_of(&pod))
                .await;
        }
        tokio::time::sleep(TICK).await;
    }
}

async fn renew_lease(store: &Store, node: &str) -> Result<(), StoreError> {
    let key = format!("/registry/leases/kube-node-lease/{node}");
    let now = crate::controllers::meta::now_micro();
    match store.get(&key).await {
        Ok(mut lease) => {
            lease["spec"]["renewTime"] = now;
            store
                .update(&key, &lease, resource_version_of(&lease))
                .await?;
        }
        Err(StoreError::NotFound { .. }) => {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": { "name": node, "namespace": "kube-node-lease", "uid": format!("lease-{node}") },
                "spec": { "holderIdentity": node, "leaseDurationSeconds": 40, "renewTime": now },
            });
            store.create(&key, &lease).await?;
        }
        Err(error) => return Err(error),
    }
    Ok(())
}
