//! End to end: a pod's ServiceAccount token works from inside the pod with
//! the Python client's in-cluster config. skiff-control serves on the
//! fabric and leases its address to the `kubernetes` Service; the agent
//! runs with a node credential it bootstraps, projects each pod's
//! `kube-api-access-*` volume with a token it requests for the pod's
//! ServiceAccount, bound to the pod, and gives the containers
//! `KUBERNETES_SERVICE_HOST`/`_PORT`. A pod running
//! `config.load_incluster_config()` reaches the API server through the
//! Service's ClusterIP on skiff's datapath: with a Role that lets its
//! ServiceAccount list pods it lists them, without one it is refused with
//! 403; its token names the pod it is bound to.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::time::Duration;

use serde_json::{Value, json};
use skiff_tests::{Testbed, eventually};

const NAMESPACE: &str = "podtoken";
const TIMEOUT: Duration = Duration::from_secs(90);

/// What each pod runs: its token's pod claim, the in-cluster config's
/// server, then the pods it lists or the status it is refused with.
const CLIENT: &str = r#"
import base64, json, os
from kubernetes import client, config
from kubernetes.client.rest import ApiException

config.load_incluster_config()
with open("/var/run/secrets/kubernetes.io/serviceaccount/token") as f:
    payload = f.read().split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
pod = claims["kubernetes.io"]["pod"]
print("BOUND", pod["name"], pod["uid"])
print("SERVER", client.Configuration.get_default_copy().host)
namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
try:
    listed = client.CoreV1Api().list_namespaced_pod(namespace)
    print("LISTED", " ".join(sorted(p.metadata.name for p in listed.items)))
except ApiException as error:
    print("REFUSED", error.status)
"#;

fn apply(testbed: &Testbed, object: &Value) {
    testbed.kubectl_ok(&["apply", "-f", "-"], &object.to_string());
}

fn client_pod(name: &str, service_account: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": NAMESPACE },
        "spec": {
            "serviceAccountName": service_account,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "client",
                "image": "skiff/python-kubernetes",
                "command": ["python3", "-c", CLIENT],
            }],
        },
    })
}

/// The pod's output once its container has ended; panics with the pod if
/// it failed.
fn finished_output(testbed: &Testbed, name: &str) -> String {
    let pod = eventually(&format!("pod {name} to finish"), TIMEOUT, || {
        let out = testbed.run_kubectl(&["get", "pod", name, "-n", NAMESPACE, "-o", "json"], "");
        let pod: Value = serde_json::from_str(&out.ok()?).unwrap();
        let phase = pod["status"]["phase"].as_str();
        matches!(phase, Some("Succeeded" | "Failed")).then_some(pod)
    });
    let logs = testbed.kubectl_ok(&["logs", name, "-n", NAMESPACE], "");
    assert_eq!(
        pod["status"]["phase"], "Succeeded",
        "pod {name} failed; its output:\n{logs}\n{pod:#}"
    );
    logs
}

fn line<'a>(output: &'a str, label: &str) -> &'a str {
    (output.lines())
        .find_map(|line| line.strip_prefix(label)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {label} line in:\n{output}"))
}

#[test]
fn a_pods_service_account_token_works_from_inside_the_pod() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed
        .start_control_for_pods(&["--leader-elect=false"])
        .unwrap();
    testbed.kubectl_ok(&["create", "namespace", NAMESPACE], "");
    eventually("the namespace's default ServiceAccount", TIMEOUT, || {
        testbed
            .run_kubectl(&["get", "serviceaccount", "default", "-n", NAMESPACE], "")
            .ok()
    });
    apply(
        &testbed,
        &json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": { "name": "reader", "namespace": NAMESPACE },
        }),
    );
    apply(
        &testbed,
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": { "name": "pod-reader", "namespace": NAMESPACE },
            "rules": [{ "apiGroups": [""], "resources": ["pods"], "verbs": ["list"] }],
        }),
    );
    apply(
        &testbed,
        &json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": { "name": "reader-reads-pods", "namespace": NAMESPACE },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader" },
            "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": NAMESPACE }],
        }),
    );

    apply(&testbed, &client_pod("lister", "reader"));
    let listed = finished_output(&testbed, "lister");
    let uid = testbed.kubectl_ok(
        &[
            "get",
            "pod",
            "lister",
            "-n",
            NAMESPACE,
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        "",
    );
    assert_eq!(line(&listed, "BOUND"), format!("lister {uid}"), "{listed}");
    assert_eq!(line(&listed, "SERVER"), "https://10.96.0.1:443", "{listed}");
    assert_eq!(line(&listed, "LISTED"), "lister", "{listed}");

    apply(&testbed, &client_pod("stranger", "default"));
    let refused = finished_output(&testbed, "stranger");
    assert!(
        line(&refused, "BOUND").starts_with("stranger "),
        "{refused}"
    );
    assert_eq!(line(&refused, "REFUSED"), "403", "{refused}");
}
