//! The Node object: created when missing, otherwise updated in place so
//! that fields others own (labels, taints, spec.unschedulable) survive:
//! through the API server (its spec, then its status through `/status`,
//! each with the resourceVersion read; a conflict reads again).
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Node;
use serde_json::{Value, json};
use tracing::info;

use crate::apiserver::{is_conflict, post_params, typed};
use crate::kubelet::store::now_rfc3339;

/// Kubernetes' default pod limit per node.
const MAX_PODS: &str = "110";

/// How many times a conflicting write is retried before waiting for the
/// next heartbeat.
const ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub ip: Ipv4Addr,
    /// `spec.podCIDRs`, IPv4 first; the first is also `spec.podCIDR`.
    pub pod_cidrs: Vec<String>,
    pub cpus: usize,
    pub memory_kib: u64,
    /// Where the API server reaches the log endpoint (`--kubelet-bind`).
    pub kubelet_port: u16,
}

/// Creates or refreshes the Node through the API server.
pub async fn refresh(client: &kube::Client, info: &NodeInfo) -> Result<(), kube::Error> {
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let post = post_params();
    for _ in 0..ATTEMPTS {
        let now = now_rfc3339();
        let Some(stored) = nodes.get_opt(&info.name).await? else {
            match nodes.create(&post, &typed(new_node(info, &now))?).await {
                Ok(_) => {
                    info!(node = %info.name, ip = %info.ip, pod_cidrs = ?info.pod_cidrs, "registered the Node");
                    return Ok(());
                }
                Err(error) if is_conflict(&error) => continue,
                Err(error) => return Err(error),
            }
        };
        let mut current = serde_json::to_value(stored).map_err(kube::Error::SerdeError)?;
        let wanted = refreshed(current.clone(), info, &now);
        if wanted["spec"] != current["spec"] {
            match nodes
                .replace(&info.name, &post, &typed(wanted.clone())?)
                .await
            {
                Ok(updated) => {
                    current = serde_json::to_value(updated).map_err(kube::Error::SerdeError)?
                }
                Err(error) if is_conflict(&error) => continue,
                Err(error) => return Err(error),
            }
        }
        current["status"] = wanted["status"].clone();
        match nodes
            .replace_status(&info.name, &post, &typed(current)?)
            .await
        {
            Ok(_) => return Ok(()),
            Err(error) if is_conflict(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn new_node(info: &NodeInfo, now: &str) -> Value {
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": info.name,
            "labels": {
                "kubernetes.io/hostname": info.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
            },
        },
        "spec": {},
        "status": {},
    });
    refreshed(node, info, now)
}

/// `node` with this agent's spec.podCIDR and a fresh status: addresses,
/// capacity, and a Ready condition whose heartbeat is `now` (its transition
/// time kept while it stays True).
pub fn refreshed(mut node: Value, info: &NodeInfo, now: &str) -> Value {
    node["spec"]["podCIDR"] = json!(info.pod_cidrs.first());
    node["spec"]["podCIDRs"] = json!(info.pod_cidrs);
    let resources = json!({
        "cpu": info.cpus.to_string(),
        "memory": format!("{}Ki", info.memory_kib),
        "pods": MAX_PODS,
    });
    let conditions = node["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let was_ready = conditions
        .iter()
        .find(|c| c["type"] == "Ready")
        .filter(|c| c["status"] == "True");
    let transition = was_ready
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now)
        .to_owned();
    let mut conditions: Vec<Value> = conditions
        .into_iter()
        .filter(|c| c["type"] != "Ready")
        .collect();
    conditions.push(json!({
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "skiff-agent is posting ready status",
        "lastHeartbeatTime": now,
        "lastTransitionTime": transition,
    }));
    let status = &mut node["status"];
    status["addresses"] = json!([
        { "type": "InternalIP", "address": info.ip.to_string() },
        { "type": "Hostname", "address": info.name },
    ]);
    status["capacity"] = resources.clone();
    status["allocatable"] = resources;
    status["conditions"] = json!(conditions);
    status["phase"] = json!("Running");
    status["daemonEndpoints"] = json!({ "kubeletEndpoint": { "Port": info.kubelet_port } });
    status["nodeInfo"] = json!({
        "kubeletVersion": concat!("skiff-agent-", env!("CARGO_PKG_VERSION")),
        "kubeProxyVersion": concat!("skiff-agent-", env!("CARGO_PKG_VERSION")),
        "containerRuntimeVersion": "runc://1",
        "operatingSystem": "linux",
        "architecture": std::env::consts::ARCH,
        "kernelVersion": kernel_release(),
        "osImage": "", "machineID": "", "systemUUID": "", "bootID": "",
    });
    node
}

/// `MemTotal` from /proc/meminfo, in KiB.
pub fn mem_total_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> NodeInfo {
        NodeInfo {
            name: "node1".into(),
            ip: Ipv4Addr::new(172, 30, 0, 11),
            pod_cidrs: vec!["10.244.1.0/24".into()],
            cpus: 2,
            memory_kib: 1024,
            kubelet_port: 10250,
        }
    }

    #[test]
    fn a_new_node_is_ready_with_its_addresses_and_capacity() {
        let node = new_node(&info(), "t0");
        assert_eq!(node["kind"], "Node");
        assert_eq!(node["spec"]["podCIDR"], "10.244.1.0/24");
        assert_eq!(node["status"]["addresses"][0]["address"], "172.30.0.11");
        assert_eq!(node["status"]["capacity"]["cpu"], "2");
        assert_eq!(node["status"]["allocatable"]["memory"], "1024Ki");
        assert_eq!(node["status"]["conditions"][0]["status"], "True");
    }

    #[test]
    fn a_refresh_keeps_others_fields_and_the_transition_time() {
        let mut node = new_node(&info(), "t0");
        node["spec"]["unschedulable"] = json!(true);
        let node = refreshed(node, &info(), "t1");
        assert_eq!(node["spec"]["unschedulable"], true);
        let ready = &node["status"]["conditions"][0];
        assert_eq!(ready["lastHeartbeatTime"], "t1");
        assert_eq!(ready["lastTransitionTime"], "t0");
        assert_eq!(node["status"]["conditions"].as_array().unwrap().len(), 1);
    }
}
