//! The scheduler and the controllers end to end: real etcd, skiff-control
//! with its controllers, real kubectl, and a stand-in for the node agents
//! (`kubelet`).

use std::future::Future;

use super::kubelet::Kubelet;
use super::*;
use crate::controllers::ControllerConfig;
use crate::store::Store;

/// Controllers without leader election (one instance) and a quick resync.
fn controllers() -> ControllerConfig {
    ControllerConfig {
        leader_election: None,
        resync: Duration::from_millis(200),
    }
}

/// Polls `check` until it yields a value; panics after `seconds`.
async fn eventually<T, F: Future<Output = Option<T>>>(
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
    let endpoints = cluster.ok(&["get", "endpoints", "web", "-o", "json"]).await;
    let endpoints: Value = serde_json::from_str(&endpoints).unwrap();
    assert_eq!(
        endpoints["subsets"][0]["addresses"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{endpoints}"
    );
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
