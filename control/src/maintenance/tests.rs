//! Fault test (e) of issue 16: an hour of heartbeats from 50 nodes, run
//! faster than real time against a real etcd, with compaction and
//! defragmentation at the same speed-up, keeps etcd's database bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use skiff_etcd::keys::{LEASES, NODES, object_key};
use skiff_etcd::kv::{Kv, Written};
use skiff_etcd::maintenance::database_size;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::*;
use crate::test_support::Etcd;

const NODE_COUNT: usize = 50;
/// An hour of the agents' heartbeats, one every 10 s.
const HEARTBEATS: u32 = 360;
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How much faster than real time the hour runs (about 24 s).
const SPEEDUP: u32 = 150;
/// Past this the database grew with the history: without compaction the
/// hour's 36 000 writes take about 80 MB; with it about one or two
/// intervals of history are kept, about 12 MB.
const BOUND: i64 = 24 << 20;

/// A Node as an agent reports it, about 2.5 KB of JSON.
fn node(name: &str, heartbeat: u32) -> Value {
    let time = format!(
        "2026-01-01T{:02}:{:02}:{:02}Z",
        heartbeat / 360,
        heartbeat / 6 % 60,
        heartbeat % 6 * 10
    );
    let conditions: Vec<Value> = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        .iter()
        .map(|kind| {
            json!({
                "type": kind,
                "status": if *kind == "Ready" { "True" } else { "False" },
                "lastHeartbeatTime": time,
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "reason": format!("Kubelet{kind}"),
                "message": format!("kubelet reports {kind} as expected on this node"),
            })
        })
        .collect();
    let images: Vec<Value> = (0..8)
        .map(|image| {
            json!({
                "names": [format!("registry.local/skiff/image-{image}@sha256:{:064x}", image)],
                "sizeBytes": 10_000_000 + image,
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "uid": format!("uid-{name}"),
                      "labels": { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" } },
        "spec": { "podCIDR": "10.244.1.0/24" },
        "status": {
            "conditions": conditions,
            "addresses": [{ "type": "InternalIP", "address": "172.30.0.11" },
                          { "type": "Hostname", "address": name }],
            "capacity": { "cpu": "2", "memory": "4028360Ki", "pods": "110" },
            "allocatable": { "cpu": "2", "memory": "3925960Ki", "pods": "110" },
            "nodeInfo": { "kubeletVersion": "v1.37.0-skiff", "osImage": "Debian GNU/Linux 12",
                          "kernelVersion": "6.1.0", "architecture": "amd64",
                          "containerRuntimeVersion": "runc://1.1.5", "operatingSystem": "linux" },
            "images": images,
        },
    })
}

fn lease(name: &str, heartbeat: u32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "name": name, "namespace": "kube-node-lease" },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": 40,
                  "renewTime": format!("2026-01-01T00:00:{:02}.{heartbeat:06}Z", heartbeat % 60) },
    })
}

/// Writes `value` over `key` as the agent does: compare-and-swap on the
/// revision it last wrote.
async fn write(kv: &Kv, key: &str, value: &Value, revision: &mut i64) {
    let written = if *revision == 0 {
        kv.create(key, value.to_string()).await
    } else {
        kv.update(key, value.to_string(), *revision).await
    };
    match written.expect("etcd takes the heartbeat") {
        Written::Done { revision: now } => *revision = now,
        other => panic!("{key}: {other:?}"),
    }
}

/// One node's hour: its Lease and its Node status every heartbeat.
async fn heartbeats(kv: Kv, name: String) {
    let node_key = object_key(NODES, None, &name);
    let lease_key = object_key(LEASES, Some("kube-node-lease"), &name);
    let (mut node_revision, mut lease_revision) = (0, 0);
    let mut ticks = tokio::time::interval(HEARTBEAT / SPEEDUP);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for heartbeat in 0..HEARTBEATS {
        ticks.tick().await;
        write(
            &kv,
            &lease_key,
            &lease(&name, heartbeat),
            &mut lease_revision,
        )
        .await;
        write(&kv, &node_key, &node(&name, heartbeat), &mut node_revision).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accelerated_hour_of_heartbeats_keeps_etcds_database_bounded() {
    let etcd = Etcd::start();
    let store = etcd.store().await;
    let mut maintenance = JoinSet::new();
    start(
        &store,
        std::slice::from_ref(&etcd.url),
        &MaintenanceConfig {
            compaction_interval: Some(Duration::from_secs(300) / SPEEDUP),
            defrag: DefragPolicy {
                min_free_bytes: 4 << 20,
                min_free_fraction: 0.5,
            },
            repair_interval: None,
        },
        &mut maintenance,
    );

    let largest = Arc::new(AtomicI64::new(0));
    let sampler = tokio::spawn({
        let (endpoint, largest) = (etcd.url.clone(), largest.clone());
        async move {
            loop {
                if let Ok(size) = database_size(&endpoint).await {
                    largest.fetch_max(size.db_size, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    let started = std::time::Instant::now();
    let mut nodes = JoinSet::new();
    for index in 1..=NODE_COUNT {
        nodes.spawn(heartbeats(store.client(), format!("node{index}")));
    }
    while let Some(node) = nodes.join_next().await {
        node.expect("a node's heartbeats");
    }
    sampler.abort();
    let largest = largest.load(Ordering::Relaxed);
    let last = database_size(&etcd.url).await.unwrap();
    eprintln!(
        "an hour of heartbeats in {:?}: largest dbSize {largest} B, last {} B ({} B in use)",
        started.elapsed(),
        last.db_size,
        last.in_use
    );
    assert!(
        largest <= BOUND,
        "etcd's database reached {largest} B, over {BOUND} B"
    );
}
