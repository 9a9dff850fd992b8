//! The scheduler and the controllers end to end: real etcd, skiff-control
//! with its controllers, real kubectl, and a stand-in for the node agents
//! (`kubelet`).

use std::future::Future;

use super::kubelet::Kubelet;
use super::*;
use crate::controllers::ControllerConfig;
use crate::store::{EventType, Store, WatchBatch};

/// Controllers without leader election (one instance), a quick resync
/// and short node timeouts.
pub(super) fn controllers() -> ControllerConfig {
    ControllerConfig {
        leader_election: None,
        resync: Duration::from_millis(200),
        node_monitor_grace_period: Duration::from_secs(2),
        pod_eviction_timeout: Duration::from_secs(1),
        ..ControllerConfig::default()
    }
}

/// Polls `check` until it yields a value; panics after `seconds`.
pub(super) async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    seconds: u64,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn list(store: &Store, prefix: &str) -> Vec<Value> {
    store
        .list(prefix, Default::default(), |_| true)
        .await
        .unwrap()
        .items
}

/// The pods labelled `app=<app>` in `namespace`.
async fn pods(store: &Store, namespace: &str, app: &str) -> Vec<Value> {
    list(store, &format!("/registry/pods/{namespace}/"))
        .await
        .into_iter()
        .filter(|pod| pod["metadata"]["labels"]["app"] == app)
        .collect()
}

fn ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The endpoints of the Service's slices.
async fn slice_endpoints(
    store: &Store,
    namespace: &str,
    service: &str,
) -> (Vec<Value>, Vec<Value>) {
    let slices: Vec<Value> = list(store, &format!("/registry/endpointslices/{namespace}/"))
        .await
        .into_iter()
        .filter(|slice| slice["metadata"]["labels"]["kubernetes.io/service-name"] == service)
        .collect();
    let endpoints = slices
        .iter()
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .collect();
    (slices, endpoints)
}

fn web_deployment(replicas: u32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web", "labels": { "app": "web" } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{
                    "name": "app",
                    "image": image,
                    "ports": [{ "name": "http", "containerPort": 8080 }],
                    "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } },
                }] },
            },
        },
    })
}

fn web_service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "web" },
        "spec": {
            "selector": { "app": "web" },
            "ports": [{ "name": "web", "port": 80, "targetPort": "http" }],
        },
    })
}

/// Waits until the Service's slices list `count` ready endpoints and no
/// others.
async fn wait_for_ready_endpoints(store: &Store, count: usize) -> Vec<Value> {
    eventually(&format!("{count} ready endpoints"), 20, || async {
        let (slices, endpoints) = slice_endpoints(store, "default", "web").await;
        let all_ready = endpoints.iter().all(|e| e["conditions"]["ready"] == true);
        (endpoints.len() == count && all_ready).then_some(slices)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_pods_spread_serve_scale_and_roll() {
    let cluster = Cluster::start_controlled(controllers()).await;
    let kubelet = Kubelet::start(&cluster, &["node1", "node2"], Duration::from_millis(300)).await;
    let store = kubelet.store();
    let (ok, _, stderr) = cluster.send("apply", &web_deployment(3, "web:v1")).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = cluster.send("apply", &web_service()).await;
    assert!(ok, "{stderr}");

    // Deployment -> ReplicaSet -> 3 pods, bound to both nodes.
    let bound = eventually("3 bound pods", 20, || async {
        let pods = pods(store, "default", "web").await;
        let bound: Vec<String> = pods
            .iter()
            .filter_map(|pod| pod["spec"]["nodeName"].as_str().map(str::to_owned))
            .collect();
        (bound.len() == 3).then_some(bound)
    })
    .await;
    assert!(
        bound.contains(&"node1".to_owned()) && bound.contains(&"node2".to_owned()),
        "{bound:?}"
    );
    let rs = cluster.ok(&["get", "rs", "-o", "json"]).await;
    let rs: Value = serde_json::from_str(&rs).unwrap();
    let rs = &rs["items"][0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
    for pod in pods(store, "default", "web").await {
        let name = pod["metadata"]["name"].as_str().unwrap();
        assert!(
            name.starts_with(&format!("web-{hash}-"))
                && name.len() == format!("web-{hash}-").len() + 5,
            "{name}"
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(pod["metadata"]["labels"]["pod-template-hash"], hash);
    }

    // Running and Ready -> the slices and the Endpoints list them, with
    // the named targetPort resolved.
    let slices = wait_for_ready_endpoints(store, 3).await;
    let slice = &slices[0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(
        slice["ports"],
        json!([{ "name": "web", "port": 8080, "protocol": "TCP" }])
    );
    assert_eq!(slice["addressType"], "IPv4");
    let endpoint = &slice["endpoints"][0];
    assert_eq!(
        endpoint["conditions"],
        json!({ "ready": true, "serving": true, "terminating": false })
    );
    assert!(endpoint["nodeName"].as_str().unwrap().starts_with("node"));
    assert!(endpoint["zone"].as_str().unwrap().starts_with("zone-"));
    assert_eq!(endpoint["targetRef"]["kind"], "Pod");
    // The Endpoints controller writes its object apart from the slices.
    let endpoints = eventually("the Endpoints web with 3 addresses", 10, || async {
        let (ok, stdout, _) = cluster
            .run(&["get", "endpoints", "web", "-o", "json"])
            .await;
        let endpoints: Value = serde_json::from_str(&stdout).ok().filter(|_| ok)?;
        let addresses = endpoints["subsets"][0]["addresses"].as_array()?.len();
        (addresses == 3).then_some(endpoints)
    })
    .await;
    assert_eq!(
        endpoints["subsets"][0]["ports"],
        json!([{ "name": "web", "port": 8080, "protocol": "TCP" }])
    );

    // Scale 3 -> 5 -> 1.
    cluster
        .ok(&["scale", "deployment", "web", "--replicas=5"])
        .await;
    wait_for_ready_endpoints(store, 5).await;
    cluster
        .ok(&["scale", "deployment", "web", "--replicas=1"])
        .await;
    wait_for_ready_endpoints(store, 1).await;

    // A rolling update of 4 (25%: one more, one unavailable at most) never
    // has fewer than 3 ready pods, and rollout status sees it through.
    cluster
        .ok(&["scale", "deployment", "web", "--replicas=4"])
        .await;
    wait_for_ready_endpoints(store, 4).await;
    let watcher_store = store.clone();
    let lowest = tokio::spawn(async move {
        let mut lowest = usize::MAX;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
        while tokio::time::Instant::now() < deadline {
            let pods = pods(&watcher_store, "default", "web").await;
            let ready_count = pods.iter().filter(|pod| ready(pod)).count();
            lowest = lowest.min(ready_count);
            let done = pods.len() == 4
                && pods
                    .iter()
                    .all(|pod| ready(pod) && pod["spec"]["containers"][0]["image"] == "web:v2");
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        lowest
    });
    cluster
        .ok(&["set", "image", "deployment/web", "app=web:v2"])
        .await;
    let (ok, stdout, stderr) = cluster
        .run(&["rollout", "status", "deployment/web", "--timeout=10s"])
        .await;
    assert!(
        ok && stdout.contains("successfully rolled out"),
        "{stdout}{stderr}"
    );
    let lowest = lowest.await.unwrap();
    assert!(
        lowest >= 3,
        "only {lowest} pods were ready during the rollout"
    );
    let slices = wait_for_ready_endpoints(store, 4).await;
    assert!(!slices.is_empty());
    let images: BTreeSet<String> = pods(store, "default", "web")
        .await
        .iter()
        .map(|pod| {
            pod["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(images, BTreeSet::from(["web:v2".to_owned()]));
    let rs = cluster.ok(&["get", "rs", "-o", "name"]).await;
    assert_eq!(rs.lines().count(), 2, "{rs}");

    // Settled, the controllers write nothing more (no pass undoes
    // another's, none rewrites what it reads back).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let revision = store.current_revision().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for prefix in [
        "/registry/pods/",
        "/registry/replicasets/",
        "/registry/deployments/",
        "/registry/endpointslices/",
        "/registry/services/",
        "/registry/minions/",
    ] {
        let mut watch = store.watch(prefix, revision + 1, None).await.unwrap();
        let changes = tokio::time::timeout(Duration::from_millis(300), watch.next()).await;
        assert!(changes.is_err(), "{prefix} keeps changing: {changes:?}");
    }
}

/// `kubectl get events` with `reason`, in `output` form.
async fn events_with(cluster: &Cluster, reason: &str, output: &str) -> String {
    let selector = format!("reason={reason}");
    cluster
        .ok(&["get", "events", "--field-selector", &selector, "-o", output])
        .await
}

async fn get_pod(kubelet: &Kubelet, name: &str) -> Option<Value> {
    let key = format!("/registry/pods/default/{name}");
    kubelet.store().get(&key).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_pods_say_why() {
    let cluster = Cluster::start_controlled(controllers()).await;
    let kubelet = Kubelet::start(&cluster, &["node1", "node2"], Duration::ZERO).await;
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "big" },
        "spec": { "containers": [{ "name": "app", "image": "x", "resources": { "requests": { "cpu": "64" } } }] },
    });
    let (ok, _, stderr) = cluster.send("create", &pod).await;
    assert!(ok, "{stderr}");
    let message = "0/2 nodes are available: 2 Insufficient cpu.";
    eventually("PodScheduled=False", 10, || async {
        let pod = get_pod(&kubelet, "big").await?;
        let condition = pod["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled")?
            .clone();
        (condition["status"] == "False"
            && condition["reason"] == "Unschedulable"
            && condition["message"] == message)
            .then_some(())
    })
    .await;
    let events: Value =
        serde_json::from_str(&events_with(&cluster, "FailedScheduling", "json").await).unwrap();
    assert_eq!(events["items"][0]["message"], message, "{events}");
    assert_eq!(events["items"][0]["involvedObject"]["name"], "big");
    let pod = get_pod(&kubelet, "big").await.unwrap();
    assert!(pod["spec"]["nodeName"].is_null());
    let described = cluster.ok(&["describe", "pod", "big"]).await;
    assert!(described.contains("FailedScheduling"), "{described}");

    // A pod that fits is bound through the binding subresource, with an
    // event.
    let small = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "small" },
        "spec": { "nodeSelector": { "kubernetes.io/hostname": "node2" }, "containers": [{ "name": "app", "image": "x" }] },
    });
    assert!(cluster.send("create", &small).await.0);
    eventually("small bound to node2", 10, || async {
        let pod = get_pod(&kubelet, "small").await?;
        (pod["spec"]["nodeName"] == "node2").then_some(())
    })
    .await;
    let events = events_with(&cluster, "Scheduled", "jsonpath={.items[*].message}").await;
    assert!(
        events.contains("Successfully assigned default/small to node2"),
        "{events}"
    );
}

/// The Deployment `web` of `replicas` in `namespace`, applied and Ready.
async fn run_web(cluster: &Cluster, store: &Store, namespace: &str, replicas: usize) {
    let mut deployment = web_deployment(replicas as u32, "web:v1");
    deployment["metadata"]["namespace"] = json!(namespace);
    let (ok, _, stderr) = cluster.send("apply", &deployment).await;
    assert!(ok, "{stderr}");
    eventually(&format!("{replicas} ready pods"), 20, || async {
        let pods = pods(store, namespace, "web").await;
        (pods.len() == replicas && pods.iter().all(ready)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_lost_node_are_replaced() {
    let cluster = Cluster::start_controlled(controllers()).await;
    let kubelet = Kubelet::start(&cluster, &["node1", "node2"], Duration::ZERO).await;
    let store = kubelet.store();
    run_web(&cluster, store, "default", 4).await;
    let on_node2 = pods(store, "default", "web")
        .await
        .iter()
        .filter(|pod| pod["spec"]["nodeName"] == "node2")
        .count();
    assert_eq!(on_node2, 2, "spread over both nodes");

    // node2's agent stops: its lease lapses, it becomes NotReady and
    // tainted, and its pods come back on node1.
    kubelet.stop("node2");
    let node = eventually("node2 NotReady", 10, || async {
        let node = store.get("/registry/minions/node2").await.ok()?;
        let unknown = node["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "Unknown");
        let tainted = node["spec"]["taints"]
            .as_array()?
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute");
        (unknown && tainted).then_some(node)
    })
    .await;
    assert_eq!(node["spec"]["podCIDR"], "10.244.2.0/24", "kept");
    eventually("4 ready pods on node1", 15, || async {
        let pods = pods(store, "default", "web").await;
        let moved = pods.len() == 4
            && pods
                .iter()
                .all(|pod| ready(pod) && pod["spec"]["nodeName"] == "node1");
        moved.then_some(())
    })
    .await;
    let (_, endpoints) = slice_endpoints(store, "default", "web").await;
    assert!(endpoints.iter().all(|e| e["nodeName"] == "node1"));
    let status = cluster.ok(&["get", "nodes"]).await;
    assert!(status.contains("NotReady"), "{status}");

    // A node deleted outright: its pods go after the grace period too.
    cluster.ok(&["delete", "node", "node1"]).await;
    eventually("the pods of the deleted node gone", 15, || async {
        let pods = pods(store, "default", "web").await;
        pods.iter()
            .all(|pod| pod["spec"]["nodeName"] != "node1")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_a_pod_cidr_get_one() {
    let cluster = Cluster::start_controlled(controllers()).await;
    // node1 and node2 register with 10.244.1.0/24 and 10.244.2.0/24.
    let kubelet = Kubelet::start(&cluster, &["node1", "node2"], Duration::ZERO).await;
    for name in ["node3", "node4"] {
        let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name } });
        let (code, body) = cluster.send_json("POST", "/api/v1/nodes", &node).await;
        assert_eq!(code, 201, "{body}");
    }
    let cidrs = eventually("pod CIDRs", 10, || async {
        let mut cidrs = Vec::new();
        for name in ["node1", "node2", "node3", "node4"] {
            let node = kubelet
                .store()
                .get(&format!("/registry/minions/{name}"))
                .await
                .ok()?;
            cidrs.push(node["spec"]["podCIDR"].as_str()?.to_owned());
        }
        Some(cidrs)
    })
    .await;
    let assigned = BTreeSet::from([cidrs[2].clone(), cidrs[3].clone()]);
    assert_eq!(cidrs[..2], ["10.244.1.0/24", "10.244.2.0/24"]);
    assert_eq!(
        assigned,
        BTreeSet::from(["10.244.0.0/24".to_owned(), "10.244.3.0/24".to_owned()])
    );

    // A deleted node's range is handed out again.
    cluster.ok(&["delete", "node", "node3"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "node5" } });
    let (code, body) = cluster.send_json("POST", "/api/v1/nodes", &node).await;
    assert_eq!(code, 201, "{body}");
    let cidr = eventually("node5's pod CIDR", 10, || async {
        let node = kubelet.store().get("/registry/minions/node5").await.ok()?;
        node["spec"]["podCIDR"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(cidr, cidrs[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_namespaces_take_their_objects_along() {
    let cluster = Cluster::start_controlled(controllers()).await;
    let kubelet = Kubelet::start(&cluster, &["node1", "node2"], Duration::ZERO).await;
    let store = kubelet.store();

    // A ReplicaSet's pods go with it.
    let replica_set = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": { "name": "cache" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "cache" } },
            "template": { "metadata": { "labels": { "app": "cache" } }, "spec": { "containers": [{ "name": "c", "image": "cache" }] } },
        },
    });
    assert!(cluster.send("apply", &replica_set).await.0);
    eventually("2 cache pods", 10, || async {
        (pods(store, "default", "cache").await.len() == 2).then_some(())
    })
    .await;
    // --cascade=orphan keeps them, without the owner.
    cluster
        .ok(&["delete", "rs", "cache", "--cascade=orphan"])
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let orphans = pods(store, "default", "cache").await;
    assert_eq!(orphans.len(), 2);
    assert!(
        orphans
            .iter()
            .all(|pod| pod["metadata"]["ownerReferences"].is_null())
    );
    for pod in &orphans {
        let name = pod["metadata"]["name"].as_str().unwrap();
        cluster.ok(&["delete", "pod", name]).await;
    }
    // Without: they go with it.
    assert!(cluster.send("apply", &replica_set).await.0);
    eventually("2 cache pods again", 10, || async {
        (pods(store, "default", "cache").await.len() == 2).then_some(())
    })
    .await;
    cluster.ok(&["delete", "rs", "cache"]).await;
    eventually("cache pods gone", 10, || async {
        pods(store, "default", "cache")
            .await
            .is_empty()
            .then_some(())
    })
    .await;

    // kubectl delete namespace: Terminating, emptied, removed.
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } });
    assert!(cluster.send("apply", &namespace).await.0);
    let (code, created) = cluster.get_json("/api/v1/namespaces/shop").await;
    assert_eq!(code, 200, "{created}");
    assert_eq!(created["spec"]["finalizers"], json!(["kubernetes"]));
    run_web(&cluster, store, "shop", 2).await;
    let mut service = web_service();
    service["metadata"]["namespace"] = json!("shop");
    assert!(cluster.send("apply", &service).await.0);
    let settings = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "settings", "namespace": "shop" },
        "data": { "a": "b" },
    });
    assert!(cluster.send("apply", &settings).await.0);
    eventually("the Service's slice", 10, || async {
        let (slices, endpoints) = slice_endpoints(store, "shop", "web").await;
        (!slices.is_empty() && endpoints.len() == 2).then_some(())
    })
    .await;
    let before = store.current_revision().await.unwrap();
    cluster
        .ok(&["delete", "namespace", "shop", "--timeout=15s"])
        .await;
    // Its history: marked Terminating first, removed last.
    let mut watch = store
        .watch("/registry/namespaces/shop", before + 1, None)
        .await
        .unwrap();
    let mut history = Vec::new();
    while let Ok(Ok(WatchBatch::Events(events))) =
        tokio::time::timeout(Duration::from_millis(300), watch.next()).await
    {
        history.extend(events);
    }
    let first = &history.first().expect("the namespace changed").object;
    assert_eq!(first["status"]["phase"], "Terminating");
    assert!(first["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(history.last().unwrap().event_type, EventType::Deleted);
    // The controller ends it through `/finalize`, not a store delete.
    let finalized = &history[history.len() - 2].object;
    assert_eq!(finalized["spec"]["finalizers"], json!([]), "{history:?}");
    let (ok, _, stderr) = cluster.run(&["get", "namespace", "shop"]).await;
    assert!(!ok && stderr.contains("not found"), "{stderr}");
    let everything = store
        .list("/registry/", Default::default(), |object| {
            object["metadata"]["namespace"] == "shop"
        })
        .await
        .unwrap()
        .items;
    assert!(everything.is_empty(), "left in shop: {everything:?}");
    let (ok, _, stderr) = cluster.run(&["delete", "namespace", "default"]).await;
    assert!(!ok && stderr.contains("may not be deleted"), "{stderr}");
}

/// How many pods were created since etcd started (its history, watched
/// from the first revision).
async fn pods_ever_created(store: &Store) -> usize {
    let mut watch = store.watch("/registry/pods/", 1, None).await.unwrap();
    let mut created = 0;
    while let Ok(Ok(WatchBatch::Events(events))) =
        tokio::time::timeout(Duration::from_millis(500), watch.next()).await
    {
        created += events
            .iter()
            .filter(|event| event.event_type == EventType::Added)
            .count();
    }
    created
}

/// Controllers with leader election under `identity`, quick to hand over.
fn elected(identity: &str) -> ControllerConfig {
    ControllerConfig {
        leader_election: Some(crate::controllers::LeaderElection {
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(2),
            retry_period: Duration::from_millis(200),
        }),
        ..controllers()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts() {
    let first = Cluster::start_controlled(elected("first")).await;
    let second = Cluster::on(
        first.etcd.clone(),
        ApiConfig::default(),
        Some(elected("second")),
    )
    .await;
    let kubelet = Kubelet::start(&first, &["node1", "node2"], Duration::ZERO).await;
    let store = kubelet.store();
    let lease = "/registry/leases/kube-system/skiff-control";
    let leader = eventually("a leader", 10, || async {
        let lease = store.get(lease).await.ok()?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    })
    .await;
    run_web(&second, store, "default", 3).await;
    // Both instances see the same objects; had both acted, more pods would
    // have been created than asked for (and the surplus deleted again).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods_ever_created(store).await, 3);
    let reporters = first
        .ok(&[
            "get",
            "events",
            "-o",
            "jsonpath={.items[*].reportingInstance}",
        ])
        .await;
    let reporters: BTreeSet<&str> = reporters.split_whitespace().collect();
    assert_eq!(
        reporters,
        BTreeSet::from([leader.as_str()]),
        "only the leader acts"
    );
    let replica_sets = list(store, "/registry/replicasets/default/").await;
    assert_eq!(replica_sets.len(), 1);

    // The leader goes; the other takes over and carries on.
    let (gone, survivor, expected) = if leader == "first" {
        (first, second, "second")
    } else {
        (second, first, "first")
    };
    drop(gone);
    eventually("a new leader", 10, || async {
        let lease = store.get(lease).await.ok()?;
        (lease["spec"]["holderIdentity"] == expected).then_some(())
    })
    .await;
    survivor
        .ok(&["scale", "deployment", "web", "--replicas=4"])
        .await;
    eventually("4 ready pods", 15, || async {
        let pods = pods(store, "default", "web").await;
        (pods.len() == 4 && pods.iter().all(ready)).then_some(())
    })
    .await;
}

/// A node agent's `/containerLogs` on loopback, over TLS with a
/// self-signed certificate as agents have: answers every request with
/// `body` and reports the request lines.
async fn fake_agent(body: &'static str) -> (u16, tokio::sync::mpsc::Receiver<String>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let (requests, received) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let stream = acceptor.accept(stream).await.unwrap();
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            reader.read_line(&mut request_line).await.unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).await.unwrap() > 2 {
                line.clear();
            }
            let _ = requests.send(request_line.trim().to_owned()).await;
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            reader
                .into_inner()
                .write_all(reply.as_bytes())
                .await
                .unwrap();
        }
    });
    (port, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_reads_from_the_node_agent() {
    let (port, mut requests) = fake_agent("hello from app\n").await;
    let etcd = Arc::new(Etcd::start());
    etcd.store().await;
    let api = ApiConfig {
        kubelet_port: port,
        ..ApiConfig::default()
    };
    let cluster = Cluster::on(etcd, api, None).await;
    // node1's InternalIP is 127.0.0.1.
    let _kubelet = Kubelet::start(&cluster, &["node1"], Duration::ZERO).await;
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "talker" },
        "spec": { "nodeName": "node1", "containers": [{ "name": "app", "image": "x" }] },
    });
    assert!(cluster.send("create", &pod).await.0);
    let logs = cluster.ok(&["logs", "talker", "--tail=5"]).await;
    assert_eq!(logs, "hello from app\n");
    let request = requests.recv().await.unwrap();
    assert_eq!(
        request,
        "GET /containerLogs/default/talker/app?tailLines=5 HTTP/1.1"
    );
    let (ok, _, stderr) = cluster.run(&["logs", "talker", "-c", "sidecar"]).await;
    assert!(
        !ok && stderr.contains("container sidecar is not valid"),
        "{stderr}"
    );
}
