//! The verbs, authentication, watches, patches and subresources through
//! kubectl and curl.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_the_api() {
    let cluster = Cluster::start().await;

    let namespaces = cluster.ok(&["get", "ns", "-o", "name"]).await;
    for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            namespaces.contains(&format!("namespace/{namespace}")),
            "{namespaces}"
        );
    }

    let (ok, stdout, stderr) = cluster.send("create", &service("web")).await;
    assert!(
        ok && stdout.contains("service/web created"),
        "{stdout}{stderr}"
    );
    let configmap = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "settings" },
        "data": { "mode": "fast" },
    });
    assert!(cluster.send("create", &configmap).await.0);
    let (ok, _, stderr) = cluster.send("create", &configmap).await;
    assert!(
        !ok && stderr.contains("configmaps \"settings\" already exists"),
        "{stderr}"
    );

    // What was created comes back, plus identity and defaults.
    let yaml = cluster.ok(&["get", "svc", "web", "-o", "json"]).await;
    let web: Value = serde_json::from_str(&yaml).unwrap();
    assert_eq!(web["metadata"]["labels"], json!({ "app": "web" }));
    assert_eq!(web["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(web["metadata"]["namespace"], "default");
    assert_eq!(web["metadata"]["uid"].as_str().unwrap().len(), 36);
    assert!(
        web["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    let listed = cluster.ok(&["get", "svc", "-o", "yaml"]).await;
    assert!(
        listed.contains("name: web") && listed.contains("targetPort: 8080"),
        "{listed}"
    );
    let settings = cluster
        .ok(&["get", "cm", "settings", "-o", "jsonpath={.data.mode}"])
        .await;
    assert_eq!(settings, "fast");

    assert!(cluster.send("create", &service("db")).await.0);
    // Server-side Tables give kubectl its usual columns.
    let printed = cluster.ok(&["get", "svc", "-o", "wide"]).await;
    let header: Vec<&str> = printed.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
            "SELECTOR"
        ]
    );
    assert!(
        printed.contains("80/TCP") && printed.contains("app=db"),
        "{printed}"
    );
    let selected = cluster
        .ok(&["get", "svc", "-l", "app=web", "-o", "name"])
        .await;
    assert_eq!(selected.trim(), "service/web");
    let excluded = cluster
        .ok(&["get", "svc", "-l", "app notin (web)", "-o", "name"])
        .await;
    // The `kubernetes` Service has no `app` label, so it is not in (web).
    assert_eq!(excluded.trim(), "service/db\nservice/kubernetes");

    // Two updates from the same read: the second one conflicts.
    let mut first = web.clone();
    first["metadata"]["labels"]["tier"] = json!("one");
    let mut second = web.clone();
    second["metadata"]["labels"]["tier"] = json!("two");
    let (ok, _, stderr) = cluster.send("replace", &first).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = cluster.send("replace", &second).await;
    assert!(!ok, "the second update must fail");
    assert!(
        stderr.contains("Conflict") && stderr.contains("the object has been modified"),
        "{stderr}"
    );
    let tier = cluster
        .ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.metadata.labels.tier}",
        ])
        .await;
    assert_eq!(tier, "one");

    let (ok, stdout, _) = cluster.run(&["delete", "svc", "web"]).await;
    assert!(ok && stdout.contains("\"web\" deleted"), "{stdout}");
    let (ok, _, stderr) = cluster.run(&["get", "svc", "web"]).await;
    assert!(!ok);
    assert!(stderr.contains("services \"web\" not found"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_raw_http() {
    let cluster = Cluster::start().await;

    let (code, body) = cluster.curl("/api/v1/namespaces", &[]).await;
    assert_eq!(code, 401, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Unauthorized");
    let (code, _) = cluster
        .curl("/api/v1/namespaces", &["-H", "Authorization: Bearer wrong"])
        .await;
    assert_eq!(code, 401);

    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (code, body) = cluster
        .curl("/api/v1/namespaces?limit=2", &["-H", &bearer])
        .await;
    assert_eq!(code, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "NamespaceList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let token = list["metadata"]["continue"]
        .as_str()
        .expect("a continue token");
    let (code, body) = cluster
        .curl(
            &format!("/api/v1/namespaces?limit=2&continue={token}"),
            &["-H", &bearer],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let rest: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        rest["metadata"]["resourceVersion"],
        list["metadata"]["resourceVersion"]
    );

    let (code, body) = cluster.curl("/readyz", &[]).await;
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, body) = cluster.curl("/version", &[]).await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["gitVersion"],
        "v1.37.0-skiff"
    );
    let (code, body) = cluster
        .curl(
            "/apis/apps/v1/namespaces/nowhere/deployments",
            &[
                "-H",
                &bearer,
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                r#"{"metadata":{"name":"d"},"spec":{}}"#,
            ],
        )
        .await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("namespaces \\\"nowhere\\\" not found"),
        "{body}"
    );
    let (code, _) = cluster.curl("/api/v1/widgets", &["-H", &bearer]).await;
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_updates_and_bookmarks() {
    let cluster = Cluster::start().await;
    assert!(cluster.send("create", &service("web")).await.0);

    let mut watch = cluster
        .kubectl(&[
            "get",
            "svc",
            "web",
            "-w",
            "--output-watch-events",
            "-o",
            "json",
            "--request-timeout=20s",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl get -w starts");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut document = String::new();
    let mut events = Vec::new();
    let read = async {
        let mut labelled = false;
        while let Some(line) = lines.next_line().await.unwrap() {
            document.push_str(&line);
            // kubectl pretty-prints one JSON document per event.
            if let Ok(event) = serde_json::from_str::<Value>(&document) {
                document.clear();
                events.push(event["type"].as_str().unwrap_or_default().to_owned());
                if !labelled {
                    labelled = true;
                    cluster.ok(&["label", "svc", "web", "tier=front"]).await;
                } else if events.last().map(String::as_str) == Some("MODIFIED") {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the watch shows the update");
    assert_eq!(events, ["ADDED", "MODIFIED"]);
    drop(watch);

    // A raw watch from the current revision with bookmarks.
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (_, body) = cluster
        .curl("/api/v1/namespaces/default/services", &["-H", &bearer])
        .await;
    let version = serde_json::from_str::<Value>(&body).unwrap()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, body) = cluster
        .curl(
            &format!("/api/v1/namespaces/default/services?watch=1&resourceVersion={version}&allowWatchBookmarks=true&timeoutSeconds=1"),
            &["-H", &bearer],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let first: Value = serde_json::from_str(body.lines().next().expect("an event")).unwrap();
    assert_eq!(first["type"], "BOOKMARK", "{body}");

    // Resuming below etcd's compaction is 410 Gone, as an ERROR event.
    let mut etcd = cluster.etcd.client().await;
    let latest = etcd
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    etcd.compact(latest, None).await.unwrap();
    let (code, body) = cluster
        .curl(
            "/api/v1/services?watch=true&resourceVersion=1&timeoutSeconds=5",
            &["-H", &bearer],
        )
        .await;
    assert_eq!(code, 200);
    let error: Value = serde_json::from_str(body.lines().next().expect("an event")).unwrap();
    assert_eq!(error["type"], "ERROR", "{body}");
    assert_eq!(error["object"]["code"], 410);
    assert_eq!(error["object"]["reason"], "Expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_validation_and_subresources() {
    let cluster = Cluster::start().await;
    assert!(cluster.send("create", &service("web")).await.0);

    // Strategic merge keeps the list keyed by port; JSON merge replaces it.
    cluster
        .ok(&[
            "patch",
            "svc",
            "web",
            "-p",
            r#"{"spec":{"ports":[{"port":81,"name":"alt"}]}}"#,
        ])
        .await;
    let ports = cluster
        .ok(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[*].port}"])
        .await;
    assert_eq!(ports, "80 81");
    cluster
        .ok(&[
            "patch",
            "svc",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/metadata/labels/tier","value":"x"}]"#,
        ])
        .await;
    cluster
        .ok(&[
            "patch",
            "svc",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"ports":[{"port":82,"name":"only"}]}}"#,
        ])
        .await;
    let ports = cluster
        .ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[*].port} {.metadata.labels.tier}",
        ])
        .await;
    assert_eq!(ports, "82 x");

    // Validation names the field, and nothing is stored.
    let mut bad = service("bad");
    bad["spec"]["ports"][0]["port"] = json!(0);
    let (ok, _, stderr) = cluster.send("create", &bad).await;
    assert!(!ok);
    assert!(
        stderr.contains("Service \"bad\" is invalid") && stderr.contains("spec.ports[0].port"),
        "{stderr}"
    );
    assert!(!cluster.run(&["get", "svc", "bad"]).await.0);

    let bearer = format!("Authorization: Bearer {TOKEN}");
    let json_body = |body: &Value| body.to_string();
    let (code, body) = cluster
        .curl(
            "/api/v1/namespaces/default/services/web",
            &[
                "-H",
                &bearer,
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/apply-patch+yaml",
                "-d",
                "{}",
            ],
        )
        .await;
    // Server-side apply needs a field manager, as kube-apiserver says.
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("fieldManager: Required value: is required for apply patch"),
        "{body}"
    );

    // PUT .../status changes only the status.
    let current: Value =
        serde_json::from_str(&cluster.ok(&["get", "svc", "web", "-o", "json"]).await).unwrap();
    let mut sent = current.clone();
    sent["status"] = json!({ "loadBalancer": { "ingress": [{ "ip": "192.0.2.10" }] } });
    sent["spec"]["ports"][0]["port"] = json!(99);
    let (code, body) = cluster
        .curl(
            "/api/v1/namespaces/default/services/web/status",
            &[
                "-H",
                &bearer,
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/json",
                "-d",
                &json_body(&sent),
            ],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let stored: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stored["status"], sent["status"]);
    assert_eq!(stored["spec"]["ports"][0]["port"], 82);

    // A pod is bound to a node once.
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "generateName": "worker-" },
        "spec": { "containers": [{ "name": "main", "image": "none" }] },
    });
    let (code, body) = cluster
        .curl(
            "/api/v1/namespaces/default/pods",
            &[
                "-H",
                &bearer,
                "-H",
                "Content-Type: application/json",
                "-d",
                &json_body(&pod),
            ],
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["status"]["phase"], "Pending");
    let name = created["metadata"]["name"].as_str().unwrap();
    let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": name }, "target": { "kind": "Node", "name": "node1" } });
    let bind_path = format!("/api/v1/namespaces/default/pods/{name}/binding");
    let bind = [
        "-H",
        bearer.as_str(),
        "-H",
        "Content-Type: application/json",
        "-d",
    ];
    let (code, body) = cluster
        .curl(&bind_path, &[&bind[..], &[&json_body(&binding)]].concat())
        .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = cluster
        .curl(&bind_path, &[&bind[..], &[&json_body(&binding)]].concat())
        .await;
    assert_eq!(code, 409, "{body}");
    let on_node = cluster
        .ok(&[
            "get",
            "pods",
            "--field-selector",
            "spec.nodeName=node1",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(on_node.trim(), format!("pod/{name}"));

    // Deleting a running pod marks it terminating; its node removes it.
    let pod_path = format!("/api/v1/namespaces/default/pods/{name}");
    let delete = |grace: i64| {
        [
            "-H".to_owned(),
            bearer.clone(),
            "-X".to_owned(),
            "DELETE".to_owned(),
            "-H".to_owned(),
            "Content-Type: application/json".to_owned(),
            "-d".to_owned(),
            json!({ "kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": grace })
                .to_string(),
        ]
    };
    let args = delete(30);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, body) = cluster.curl(&pod_path, &args).await;
    assert_eq!(code, 200, "{body}");
    let terminating: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(terminating["metadata"]["deletionTimestamp"].is_string());
    assert!(cluster.run(&["get", "pod", name]).await.0);
    let args = delete(0);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, body) = cluster.curl(&pod_path, &args).await;
    assert_eq!(code, 200, "{body}");
    // Pods are returned when deleted (the registry's ReturnDeletedObject).
    let deleted: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(deleted["kind"], "Pod", "{body}");
    assert_eq!(deleted["metadata"]["name"], name);
    assert!(!cluster.run(&["get", "pod", name]).await.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_discovers_everything_in_two_requests() {
    let cluster = Cluster::start().await;
    let cache = cluster.dir.join("fresh-discovery-cache");
    let (ok, _, stderr) = cluster
        .run(&[
            "--cache-dir",
            cache.to_str().unwrap(),
            "get",
            "deploy",
            "-v=6",
        ])
        .await;
    assert!(ok, "{stderr}");
    // Aggregated discovery: /api and /apis name every resource, so no
    // group-version's resource list is fetched.
    assert!(stderr.contains("/apis?timeout="), "{stderr}");
    assert!(!stderr.contains("/apis/apps/v1?timeout="), "{stderr}");
    assert!(!stderr.contains("/api/v1?timeout="), "{stderr}");
}
