//! This node in the cluster: its Node object (addresses, capacity, pod
//! CIDR, Ready condition) and its Lease, both refreshed on a timer so the
//! control plane can tell a live node from a dead one; written through the
//! API server when the agent has a credential for it, else in etcd.
mod lease;
mod register;

use std::{net::Ipv4Addr, time::Duration};

use tracing::warn;

use crate::kubelet::store::Store;

pub use register::NodeInfo;

/// Where the Node and the Lease are written.
pub enum Writer {
    /// The API server, as the node's own user (`--kubeconfig`).
    Api(kube::Client),
    /// etcd itself, for an agent without an API credential.
    Etcd(Box<Store>),
}

/// Keeps the Node object and the Lease fresh every `interval` until the
/// agent stops. A failed write is logged and retried at the next tick: a
/// missed heartbeat or two is what the node lifecycle tolerates.
pub async fn heartbeat(writer: Writer, info: NodeInfo, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (node, lease) = match &writer {
            Writer::Api(client) => (
                register::refresh_through_api(client, &info)
                    .await
                    .map_err(|e| e.to_string()),
                lease::renew_through_api(client, &info.name, interval)
                    .await
                    .map_err(|e| e.to_string()),
            ),
            Writer::Etcd(store) => (
                register::refresh(store, &info)
                    .await
                    .map_err(|e| e.to_string()),
                lease::renew(store, &info.name, interval)
                    .await
                    .map_err(|e| e.to_string()),
            ),
        };
        if let Err(error) = node {
            warn!(node = %info.name, %error, "updating the Node object failed");
        }
        if let Err(error) = lease {
            warn!(node = %info.name, %error, "renewing the node Lease failed");
        }
    }
}

/// What `NodeInfo` is built from.
pub fn node_info(name: String, ip: Ipv4Addr, pod_cidr: String, kubelet_port: u16) -> NodeInfo {
    NodeInfo {
        name,
        ip,
        pod_cidr,
        kubelet_port,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_kib: register::mem_total_kib().unwrap_or(0),
    }
}
