//! Storage end to end: the storage kinds and pod validation through the
//! API and the real kubectl, and the volume binder, the local-path
//! provisioner and the scheduler with a stand-in for the node agents.

use super::kubelet::Kubelet;
use super::workloads::{controllers, eventually};
use super::*;
use crate::store::Store;

fn claim(name: &str, class: Option<&str>, size: &str) -> Value {
    let mut claim = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": { "name": name },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": size } } },
    });
    if let Some(class) = class {
        claim["spec"]["storageClassName"] = json!(class);
    }
    claim
}

fn pod_with_claim(name: &str, claim: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "containers": [{ "name": "app", "image": "skiff/busybox",
                "volumeMounts": [{ "name": "data", "mountPath": "/data" }] }],
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": claim } }],
        },
    })
}

/// A 422 whose message names `field` with `detail`.
fn refused_naming(code: u16, body: &Value, expected: &str) {
    assert_eq!(code, 422, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains(expected), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_kinds_are_served_and_validated() {
    let cluster = Cluster::start().await;
    let classes = cluster.ok(&["get", "storageclass"]).await;
    let header: Vec<&str> = classes.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    let row: Vec<&str> = classes.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..6],
        [
            "local-path",
            "(default)",
            "skiff.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "false"
        ]
    );

    let volume = |source: Value| {
        let mut volume = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": { "name": "pv1" },
            "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"] },
        });
        json_patch::merge(&mut volume["spec"], &source);
        volume
    };
    let (code, body) = cluster
        .send_json(
            "POST",
            "/api/v1/persistentvolumes",
            &volume(json!({ "nfs": { "server": "nas", "path": "/" } })),
        )
        .await;
    refused_naming(code, &body, "spec.nfs: Forbidden: not supported by skiff");
    let (code, body) = cluster
        .send_json(
            "POST",
            "/api/v1/persistentvolumes",
            &volume(json!({ "local": { "path": "/srv" } })),
        )
        .await;
    refused_naming(
        code,
        &body,
        "spec.nodeAffinity: Required value: Local volumes require node affinity",
    );
    let (code, body) = cluster
        .send_json(
            "POST",
            "/api/v1/persistentvolumes",
            &volume(json!({ "hostPath": { "path": "/srv/pv1" } })),
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(body["status"]["phase"], "Pending");
    let volumes = cluster.ok(&["get", "pv"]).await;
    assert!(
        volumes.starts_with("NAME   CAPACITY   ACCESS MODES   RECLAIM POLICY   STATUS"),
        "{volumes}"
    );
    assert!(
        volumes.contains("pv1    1Gi        RWO            Retain"),
        "{volumes}"
    );

    // A claim without a class gets the default one; "" asks for none.
    let (ok, _, stderr) = cluster.send("create", &claim("data", None, "1Gi")).await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = cluster
        .send("create", &claim("classless", Some(""), "1Gi"))
        .await;
    assert!(ok, "{stderr}");
    let class = cluster
        .ok(&[
            "get",
            "pvc",
            "data",
            "classless",
            "-o",
            "jsonpath={.items[*].spec.storageClassName}",
        ])
        .await;
    assert_eq!(class.trim(), "local-path");
    let claims = cluster.ok(&["get", "pvc", "data"]).await;
    let header: Vec<&str> = claims.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ]
    );
    assert!(claims.contains("Pending"), "{claims}");

    // A claim's spec is immutable, and skiff cannot expand it.
    let (_, current) = cluster
        .get_json("/api/v1/namespaces/default/persistentvolumeclaims/data")
        .await;
    let mut bigger = current.clone();
    bigger["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
    let (code, body) = cluster
        .send_json(
            "PUT",
            "/api/v1/namespaces/default/persistentvolumeclaims/data",
            &bigger,
        )
        .await;
    refused_naming(code, &body, "spec.resources.requests.storage: Forbidden");
    let mut other_modes = current;
    other_modes["spec"]["accessModes"] = json!(["ReadWriteMany"]);
    let (code, body) = cluster
        .send_json(
            "PUT",
            "/api/v1/namespaces/default/persistentvolumeclaims/data",
            &other_modes,
        )
        .await;
    refused_naming(
        code,
        &body,
        "spec: Forbidden: spec is immutable after creation",
    );

    // Pods whose names or paths could escape a directory are refused.
    let mut escaping = pod_with_claim("escape", "data");
    escaping["spec"]["containers"][0]["name"] = json!("../app");
    escaping["spec"]["containers"][0]["volumeMounts"][0]["subPath"] = json!("../../etc");
    let (ok, _, stderr) = cluster.send("create", &escaping).await;
    assert!(!ok);
    assert!(
        stderr.contains("spec.containers[0].name: Invalid value: \"../app\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../../etc\": must not contain '..'"),
        "{stderr}"
    );
    let (code, body) = cluster
        .get_json("/api/v1/namespaces/default/pods/escape")
        .await;
    assert_eq!(code, 404, "{body}");
}

async fn get(store: &Store, key: &str) -> Option<Value> {
    store.get(key).await.ok()
}

fn claim_key(name: &str) -> String {
    format!("/registry/persistentvolumeclaims/default/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_provisioned_on_the_node_of_their_first_pod() {
    let cluster = Cluster::start_controlled(controllers()).await;
    let kubelet = Kubelet::start(&cluster, &["node1", "node2"], Duration::ZERO).await;
    let store = kubelet.store().clone();
    assert!(cluster.send("create", &claim("data", None, "1Gi")).await.0);
    assert!(
        cluster
            .send("create", &pod_with_claim("writer", "data"))
            .await
            .0
    );

    let node = eventually("the writer scheduled", 20, || async {
        let pod = get(&store, "/registry/pods/default/writer").await?;
        pod["spec"]["nodeName"].as_str().map(str::to_owned)
    })
    .await;
    // The binder writes the claim's phase after its volumeName, which is
    // all the scheduler waits for.
    let claim = eventually("the claim Bound", 20, || async {
        let claim = get(&store, &claim_key("data")).await?;
        (claim["status"]["phase"] == "Bound").then_some(claim)
    })
    .await;
    assert_eq!(
        claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
        node.as_str()
    );
    let volume_name = format!("pvc-{}", claim["metadata"]["uid"].as_str().unwrap());
    assert_eq!(claim["spec"]["volumeName"], volume_name.as_str());
    let volume = get(
        &store,
        &format!("/registry/persistentvolumes/{volume_name}"),
    )
    .await
    .unwrap();
    assert_eq!(
        volume["spec"]["hostPath"]["path"],
        format!("/var/lib/skiff/storage/{volume_name}")
    );
    assert_eq!(
        volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!([node])
    );
    let described = cluster.ok(&["describe", "pvc", "data"]).await;
    assert!(
        described.contains(&format!(
            "Successfully provisioned volume {volume_name} on node {node}"
        )),
        "{described}"
    );
    let listed = cluster.ok(&["get", "pvc", "data", "--no-headers"]).await;
    let row: Vec<&str> = listed.split_whitespace().collect();
    assert_eq!(
        row[..6],
        [
            "data",
            "Bound",
            volume_name.as_str(),
            "1Gi",
            "RWO",
            "local-path"
        ]
    );

    // The writer goes; a node full of other work would draw the reader
    // away, but its volume keeps it on the node.
    cluster
        .ok(&["delete", "pod", "writer", "--wait=false"])
        .await;
    let filler = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": "filler" },
        "spec": { "nodeName": node, "containers": [{ "name": "app", "image": "x",
            "resources": { "requests": { "cpu": "3", "memory": "6Gi" } } }] },
    });
    assert!(cluster.send("create", &filler).await.0);
    assert!(
        cluster
            .send("create", &pod_with_claim("reader", "data"))
            .await
            .0
    );
    let reader_node = eventually("the reader scheduled", 20, || async {
        let pod = get(&store, "/registry/pods/default/reader").await?;
        pod["spec"]["nodeName"].as_str().map(str::to_owned)
    })
    .await;
    assert_eq!(reader_node, node);

    // Without its claim the pod cannot go anywhere.
    assert!(
        cluster
            .send("create", &pod_with_claim("orphan", "missing"))
            .await
            .0
    );
    eventually("the orphan unschedulable", 20, || async {
        let pod = get(&store, "/registry/pods/default/orphan").await?;
        let scheduled = pod["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled")?
            .clone();
        (scheduled["message"]
            == "0/2 nodes are available: persistentvolumeclaim \"missing\" not found.")
            .then_some(())
    })
    .await;

    // A claim in use stays until its pod is gone.
    cluster.ok(&["delete", "pvc", "data", "--wait=false"]).await;
    let listed = cluster.ok(&["get", "pvc", "data", "--no-headers"]).await;
    assert!(listed.contains("Terminating"), "{listed}");
    let claim = get(&store, &claim_key("data")).await.unwrap();
    assert_eq!(
        claim["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );
    cluster
        .ok(&["delete", "pod", "reader", "--wait=false"])
        .await;
    eventually("the claim gone", 20, || async {
        get(&store, &claim_key("data"))
            .await
            .is_none()
            .then_some(())
    })
    .await;

    // reclaimPolicy Delete: once the claim is gone, a helper pod on the
    // volume's node removes its directory, then the volume goes.
    let helper_key = format!("/registry/pods/kube-system/delete-{volume_name}");
    let helper = eventually("the helper pod", 20, || async {
        get(&store, &helper_key).await
    })
    .await;
    assert_eq!(helper["spec"]["nodeName"], node.as_str());
    assert_eq!(
        helper["spec"]["containers"][0]["command"],
        json!(["rm", "-rf", format!("/storage/{volume_name}")])
    );
    assert_eq!(
        helper["spec"]["volumes"][0]["hostPath"]["path"],
        "/var/lib/skiff/storage"
    );
    let volume_key = format!("/registry/persistentvolumes/{volume_name}");
    assert_eq!(
        get(&store, &volume_key).await.unwrap()["status"]["phase"],
        "Released"
    );
    // The node ran it to completion (whatever it wrote before).
    let mut finished = helper.clone();
    finished["status"]["phase"] = json!("Succeeded");
    finished["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    let (code, body) = cluster
        .send_json(
            "PUT",
            &format!("/api/v1/namespaces/kube-system/pods/delete-{volume_name}/status"),
            &finished,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    eventually("the volume and its helper gone", 20, || async {
        (get(&store, &volume_key).await.is_none() && get(&store, &helper_key).await.is_none())
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_volumes_are_released_not_deleted() {
    let cluster = Cluster::start_controlled(controllers()).await;
    let kubelet = Kubelet::start(&cluster, &["node1"], Duration::ZERO).await;
    let store = kubelet.store().clone();
    let volume = json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": { "name": "manual" },
        "spec": { "capacity": { "storage": "5Gi" }, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual", "hostPath": { "path": "/srv/manual" } },
    });
    assert!(cluster.send("create", &volume).await.0);
    let key = "/registry/persistentvolumes/manual";
    eventually("the volume Available", 20, || async {
        (get(&store, key).await?["status"]["phase"] == "Available").then_some(())
    })
    .await;
    // Too big for the volume: stays Pending; this one fits and binds at once.
    assert!(
        cluster
            .send("create", &claim("huge", Some("manual"), "10Gi"))
            .await
            .0
    );
    assert!(
        cluster
            .send("create", &claim("fits", Some("manual"), "1Gi"))
            .await
            .0
    );
    eventually("the claim Bound", 20, || async {
        let claim = get(&store, &claim_key("fits")).await?;
        (claim["status"]["phase"] == "Bound" && claim["spec"]["volumeName"] == "manual")
            .then_some(())
    })
    .await;
    assert_eq!(get(&store, key).await.unwrap()["status"]["phase"], "Bound");
    assert!(get(&store, &claim_key("huge")).await.unwrap()["spec"]["volumeName"].is_null());
    let listed = cluster.ok(&["get", "pv", "manual", "--no-headers"]).await;
    let row: Vec<&str> = listed.split_whitespace().collect();
    assert_eq!(
        row[..7],
        [
            "manual",
            "5Gi",
            "RWO",
            "Retain",
            "Bound",
            "default/fits",
            "manual"
        ]
    );

    cluster.ok(&["delete", "pvc", "fits", "--wait=false"]).await;
    eventually("the volume Released", 20, || async {
        (get(&store, key).await?["status"]["phase"] == "Released").then_some(())
    })
    .await;
    assert!(
        get(&store, "/registry/pods/kube-system/delete-manual")
            .await
            .is_none()
    );
}
