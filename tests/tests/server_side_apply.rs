//! Server-side apply end to end with the real `kubectl` and the Python
//! `kubernetes` client: an apply creates, applying again changes nothing, a
//! second manager's different value is a 409 conflict naming the field
//! until it forces, managedFields follow the owners, and a field dropped
//! from a manager's manifest leaves the object.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use skiff_tests::Testbed;

/// Runs `command` with `input` on stdin.
fn run(mut command: Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let _ = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes());
    child.wait_with_output().expect("the command finishes")
}

fn kubectl(testbed: &Testbed, args: &[&str], input: &str) -> Output {
    let mut command = testbed.kubectl().expect("kubectl is installed");
    command.args(args);
    run(command, input)
}

/// kubectl's stdout; panics with its stderr if it fails.
fn kubectl_ok(testbed: &Testbed, args: &[&str], input: &str) -> String {
    let output = kubectl(testbed, args, input);
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn get_json(testbed: &Testbed, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&kubectl_ok(testbed, &args, "")).expect("kubectl prints JSON")
}

/// The managedFields entry of `manager` with `operation`.
fn entry<'v>(object: &'v Value, manager: &str, operation: &str) -> Option<&'v Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|entry| entry["manager"] == manager && entry["operation"] == operation)
}

fn deployment(labels: &str, replicas: Option<u32>) -> String {
    let replicas = replicas.map_or_else(String::new, |n| format!("  replicas: {n}\n"));
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
{labels}
spec:
{replicas}  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: skiff/busybox
        imagePullPolicy: Never
        ports:
        - containerPort: 80
"#
    )
}

/// Applies a ConfigMap with the Python client: a raw PATCH with content
/// type `application/apply-patch+yaml`, as its apply helpers send.
const PYTHON_APPLY: &str = r#"
import sys
from kubernetes import client, config

config.load_kube_config(config_file=sys.argv[1])
body = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "settings"},
    "data": {"mode": "fast"},
}
applied = client.CoreV1Api().patch_namespaced_config_map(
    "settings", "default", body,
    field_manager="python-client",
    _content_type="application/apply-patch+yaml",
)
print(applied.data["mode"])
"#;

#[test]
fn server_side_apply_with_kubectl_and_python() {
    let mut testbed = Testbed::start(1).unwrap();
    let kubeconfig = testbed.start_control(&[]).unwrap();

    // Applied twice: created, then nothing changes.
    let first = deployment("    app: web\n    tier: front", Some(2));
    let applied = kubectl_ok(&testbed, &["apply", "--server-side", "-f", "-"], &first);
    assert!(
        applied.contains("deployment.apps/web serverside-applied"),
        "{applied}"
    );
    let created = get_json(&testbed, &["get", "deployment", "web"]);
    let owned = entry(&created, "kubectl", "Apply").expect("kubectl owns what it applied");
    assert_eq!(
        owned["fieldsV1"]["f:spec"]["f:replicas"],
        serde_json::json!({})
    );
    assert!(
        owned["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
            .get("k:{\"name\":\"web\"}")
            .is_some(),
        "{owned}"
    );
    kubectl_ok(&testbed, &["apply", "--server-side", "-f", "-"], &first);
    let again = get_json(&testbed, &["get", "deployment", "web"]);
    assert_eq!(
        again["metadata"]["generation"], created["metadata"]["generation"],
        "an identical apply must not change the spec"
    );

    // Another manager's different replicas conflict with kubectl's.
    let other =
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n";
    let other_args = ["apply", "--server-side", "--field-manager=other", "-f", "-"];
    let refused = kubectl(&testbed, &other_args, other);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
        ),
        "{stderr}"
    );
    let unchanged = get_json(&testbed, &["get", "deployment", "web"]);
    assert_eq!(unchanged["spec"]["replicas"], 2);

    // Forced, it takes replicas over.
    let mut forced_args = other_args.to_vec();
    forced_args.insert(2, "--force-conflicts");
    kubectl_ok(&testbed, &forced_args, other);
    let forced = get_json(&testbed, &["get", "deployment", "web"]);
    assert_eq!(forced["spec"]["replicas"], 3);
    let theirs = entry(&forced, "other", "Apply").expect("other owns replicas");
    assert_eq!(
        theirs["fieldsV1"]["f:spec"]["f:replicas"],
        serde_json::json!({})
    );
    let ours = entry(&forced, "kubectl", "Apply").expect("kubectl still owns the rest");
    assert!(
        ours["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "{ours}"
    );

    // A label kubectl no longer applies goes; replicas, now other's, stay.
    let second = deployment("    app: web", None);
    kubectl_ok(&testbed, &["apply", "--server-side", "-f", "-"], &second);
    let pruned = get_json(&testbed, &["get", "deployment", "web"]);
    assert_eq!(
        pruned["metadata"]["labels"],
        serde_json::json!({"app": "web"})
    );
    assert_eq!(pruned["spec"]["replicas"], 3);

    // The Python client applies (and so creates) a ConfigMap, then applies
    // it again. No controller writes ConfigMaps, so an unchanged
    // resourceVersion shows the identical apply wrote nothing.
    let script = std::env::temp_dir().join(format!("ssa-apply-{}.py", std::process::id()));
    std::fs::write(&script, PYTHON_APPLY).unwrap();
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kubectl-venv/bin/python");
    let python_apply = || {
        let mut command = Command::new(&python);
        command.arg(&script).arg(&kubeconfig);
        let output = run(command, "");
        assert!(
            output.status.success(),
            "python apply failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "fast");
    };
    python_apply();
    let settings = get_json(&testbed, &["get", "configmap", "settings"]);
    python_apply();
    let _ = std::fs::remove_file(&script);
    let reapplied = get_json(&testbed, &["get", "configmap", "settings"]);
    assert_eq!(
        reapplied["metadata"]["resourceVersion"], settings["metadata"]["resourceVersion"],
        "an identical apply must not write"
    );
    assert_eq!(settings["data"]["mode"], "fast");
    let python_entry = entry(&settings, "python-client", "Apply").expect("python-client owns it");
    assert_eq!(
        python_entry["fieldsV1"]["f:data"]["f:mode"],
        serde_json::json!({})
    );
}
