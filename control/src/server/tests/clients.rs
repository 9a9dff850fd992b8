//! Clients other than kubectl: the Python `kubernetes` client, and a replay
//! of the requests kube-proxy makes at start-up and while it runs.

use super::*;

/// Where `cargo xtask setup` puts the Python client (the kubectl venv).
fn python_path() -> PathBuf {
    kubectl_path().with_file_name("python")
}

/// Lists the Services of `default`, prints them as one JSON line, then
/// watches from the list's revision and prints one line per event until a
/// MODIFIED one.
const PYTHON_LIST_AND_WATCH: &str = r#"
import json, sys
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
services = v1.list_namespaced_service("default")
print(json.dumps({s.metadata.name: s.spec.cluster_ip for s in services.items}), flush=True)
stream = watch.Watch().stream(v1.list_namespaced_service, "default",
                              resource_version=services.metadata.resource_version,
                              timeout_seconds=20)
for event in stream:
    print(json.dumps({"type": event["type"], "name": event["object"].metadata.name,
                      "labels": event["object"].metadata.labels}), flush=True)
    if event["type"] == "MODIFIED":
        break
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_lists_and_watches_services() {
    let cluster = Cluster::start().await;
    assert!(cluster.send("create", &service("web")).await.0);

    let mut python = Command::new(python_path())
        .args(["-c", PYTHON_LIST_AND_WATCH])
        .arg(&cluster.server.kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = BufReader::new(python.stdout.take().unwrap()).lines();
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the client prints in time")
            .unwrap()
            .expect("a line from the client");
        serde_json::from_str(&line).unwrap()
    };

    let listed = next().await;
    assert_eq!(listed["kubernetes"], "10.96.0.1");
    assert!(
        listed["web"].as_str().unwrap().starts_with("10."),
        "{listed}"
    );

    assert!(cluster.send("create", &service("db")).await.0);
    let added = next().await;
    assert_eq!(
        added,
        json!({ "type": "ADDED", "name": "db", "labels": { "app": "db" } })
    );
    cluster.ok(&["label", "svc", "web", "tier=front"]).await;
    let modified = next().await;
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(modified["name"], "web");
    assert_eq!(modified["labels"], json!({ "app": "web", "tier": "front" }));
    let status = tokio::time::timeout(Duration::from_secs(10), python.wait())
        .await
        .expect("the client ends")
        .unwrap();
    assert!(status.success());
}

/// kube-proxy's selector: Services that a proxy must program.
const PROXY_SELECTOR: &str =
    "%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name";

fn endpoint_slice(service: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-abc"),
            "labels": { "kubernetes.io/service-name": service },
        },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": ["10.244.1.5"], "conditions": { "ready": true } }],
        "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
    })
}

/// A list as kube-proxy's informers read it: every item named, and the
/// list's kind, apiVersion and resourceVersion set.
async fn proxy_list(cluster: &Cluster, path: &str, kind: &str) -> (Vec<String>, String) {
    let (code, list) = cluster.get_json(path).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], kind, "{list}");
    assert!(list["apiVersion"].is_string(), "{list}");
    let version = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let names = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    (names, version)
}

/// Asserts that a watch's one change, bookmarks aside, added `name`.
fn assert_only_added(events: &[(String, String)], name: &str) {
    let changes: Vec<_> = events.iter().filter(|(t, _)| t != "BOOKMARK").collect();
    assert_eq!(
        changes,
        [&("ADDED".to_owned(), name.to_owned())],
        "{events:?}"
    );
}

/// A watch as kube-proxy's informers run it, while `change` writes: the
/// events' (type, name).
async fn proxy_watch(
    cluster: &Cluster,
    path: &str,
    version: &str,
    change: impl std::future::Future<Output = ()>,
) -> Vec<(String, String)> {
    let path = format!(
        "{path}&resourceVersion={version}&allowWatchBookmarks=true&timeoutSeconds=2&watch=true"
    );
    let bearer = bearer();
    let headers = ["-H", bearer.as_str()];
    let (watched, ()) = tokio::join!(cluster.curl(&path, &headers), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        change.await;
    });
    let (code, body) = watched;
    assert_eq!(code, 200, "{body}");
    body.lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            let name = event["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default();
            (event["type"].as_str().unwrap().to_owned(), name.to_owned())
        })
        .collect()
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_proxy_requests_get_valid_answers() {
    let cluster = Cluster::start().await;
    let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "node1" } });
    let (code, body) = cluster.send_json("POST", "/api/v1/nodes", &node).await;
    assert_eq!(code, 201, "{body}");
    let services = "/api/v1/namespaces/default/services";
    let slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
    for (path, object) in [(services, service("web")), (slices, endpoint_slice("web"))] {
        let (code, body) = cluster.send_json("POST", path, &object).await;
        assert_eq!(code, 201, "{body}");
    }
    let mut headless = service("headless");
    headless["metadata"]["labels"]["service.kubernetes.io/headless"] = json!("");
    let (code, body) = cluster.send_json("POST", services, &headless).await;
    assert_eq!(code, 201, "{body}");

    // Start-up: its node, by name and by field selector.
    let (code, body) = cluster.get_json("/api/v1/nodes/node1").await;
    assert_eq!((code, &body["metadata"]["name"]), (200, &json!("node1")));
    let (names, _) = proxy_list(
        &cluster,
        "/api/v1/nodes?fieldSelector=metadata.name%3Dnode1&resourceVersion=0&limit=500",
        "NodeList",
    )
    .await;
    assert_eq!(names, ["node1"]);

    // Informers: list from the cache (resourceVersion=0), then watch.
    let all_services = format!("/api/v1/services?labelSelector={PROXY_SELECTOR}");
    let (names, version) = proxy_list(
        &cluster,
        &format!("{all_services}&resourceVersion=0&limit=500"),
        "ServiceList",
    )
    .await;
    assert_eq!(
        names,
        ["kubernetes", "web", "kube-dns", "skiff-ingress"],
        "the headless one is not proxied"
    );
    let all_slices =
        format!("/apis/discovery.k8s.io/v1/endpointslices?labelSelector={PROXY_SELECTOR}");
    let (names, slice_version) = proxy_list(
        &cluster,
        &format!("{all_slices}&resourceVersion=0&limit=500"),
        "EndpointSliceList",
    )
    .await;
    assert_eq!(names, ["web-abc"]);

    let events = proxy_watch(&cluster, &all_services, &version, async {
        let mut db = service("db");
        let (code, body) = cluster.send_json("POST", services, &db).await;
        assert_eq!(code, 201, "{body}");
        db["metadata"]["name"] = json!("db-headless");
        db["metadata"]["labels"]["service.kubernetes.io/headless"] = json!("");
        let (code, body) = cluster.send_json("POST", services, &db).await;
        assert_eq!(code, 201, "{body}");
    })
    .await;
    assert_only_added(&events, "db");
    assert!(events.iter().any(|(t, _)| t == "BOOKMARK"), "{events:?}");

    let events = proxy_watch(&cluster, &all_slices, &slice_version, async {
        let (code, body) = cluster
            .send_json("POST", slices, &endpoint_slice("db"))
            .await;
        assert_eq!(code, 201, "{body}");
    })
    .await;
    assert!(
        events.contains(&("ADDED".to_owned(), "db-abc".to_owned())),
        "{events:?}"
    );

    // Its events, in both APIs.
    let regarding = json!({ "kind": "Node", "name": "node1", "uid": "node1" });
    let event = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        // Named as client-go's event recorder names them: `<regarding>.<unix nanos in hex>`.
        "metadata": { "name": "node1.18a3f0c2b7d9e000" },
        "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "kube-proxy",
        "reportingInstance": "kube-proxy-node1",
        "action": "StartKubeProxy",
        "reason": "Starting",
        "type": "Normal",
        "regarding": regarding,
    });
    let (code, body) = cluster
        .send_json(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/default/events",
            &event,
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let core_event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": { "generateName": "node1." },
        "involvedObject": regarding,
        "reason": "Starting",
        "message": "Starting kube-proxy.",
        "source": { "component": "kube-proxy", "host": "node1" },
        "type": "Normal",
    });
    let (code, body) = cluster
        .send_json("POST", "/api/v1/namespaces/default/events", &core_event)
        .await;
    assert_eq!(code, 201, "{body}");
}

fn endpoints(service: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": { "name": service },
        "subsets": [{
            "addresses": [{ "ip": "10.244.2.5", "nodeName": "node2" }],
            "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
        }],
    })
}

/// kube-proxy 1.20 (the one `cargo xtask bench` builds from Debian's
/// source package) with `EndpointSliceProxying=false` reads v1 Endpoints:
/// list from the cache with its label selector, then watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_proxy_1_20_lists_and_watches_v1_endpoints() {
    let cluster = Cluster::start().await;
    let endpoints_path = "/api/v1/namespaces/default/endpoints";
    let (code, body) = cluster
        .send_json("POST", endpoints_path, &endpoints("web"))
        .await;
    assert_eq!(code, 201, "{body}");
    let mut headless = endpoints("headless");
    headless["metadata"]["labels"] = json!({ "service.kubernetes.io/headless": "" });
    let (code, body) = cluster.send_json("POST", endpoints_path, &headless).await;
    assert_eq!(code, 201, "{body}");

    let all_endpoints = format!("/api/v1/endpoints?labelSelector={PROXY_SELECTOR}");
    let (names, version) = proxy_list(
        &cluster,
        &format!("{all_endpoints}&limit=500&resourceVersion=0"),
        "EndpointsList",
    )
    .await;
    assert_eq!(names, ["web"], "the headless one is not proxied");

    let events = proxy_watch(&cluster, &all_endpoints, &version, async {
        let (code, body) = cluster
            .send_json("POST", endpoints_path, &endpoints("db"))
            .await;
        assert_eq!(code, 201, "{body}");
    })
    .await;
    assert_only_added(&events, "db");
}
