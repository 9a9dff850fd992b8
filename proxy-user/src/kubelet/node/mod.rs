//! This node in the cluster: its Node object (addresses, capacity, pod
//! CIDR, Ready condition) and its Lease, both refreshed on a timer so the
//! control plane can tell a live node from a dead one; written through the
//! API server as the node.
mod lease;
mod register;

use std::{net::Ipv4Addr, time::Duration};

use tracing::warn;

pub use register::NodeInfo;

/// Keeps the Node object and the Lease fresh every `interval` until the
/// agent stops. A failed write is logged and retried at the next tick: a
/// missed heartbeat or two is what the node lifecycle tolerates.
pub async fn heartbeat(client: kube::Client, info: NodeInfo, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let node = register::refresh(&client, &info).await;
        let lease = lease::renew(&client, &info.name, interval).await;
        if let Err(error) = node {
            warn!(node = %info.name, %error, "updating the Node object failed");
        }
        if let Err(error) = lease {
            warn!(node = %info.name, %error, "renewing the node Lease failed");
        }
    }
}

/// What `NodeInfo` is built from.
pub fn node_info(
    name: String,
    ip: Ipv4Addr,
    pod_cidrs: Vec<String>,
    kubelet_port: u16,
) -> NodeInfo {
    NodeInfo {
        name,
        ip,
        pod_cidrs,
        kubelet_port,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_kib: register::mem_total_kib().unwrap_or(0),
    }
}
