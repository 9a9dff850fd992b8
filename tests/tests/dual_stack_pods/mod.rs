//! Pods, objects and kubectl reads the dual-stack tests share: each runs
//! its pods from the Python image on a dual-stack testbed, in a namespace
//! of its own.
//!
//! Every test binary compiles this module and uses a different part of it.
#![allow(dead_code)]
use std::time::Duration;

use serde_json::{Value, json};
use skiff_tests::{Testbed, dual_stack_control_args, eventually};

pub const TIMEOUT: Duration = Duration::from_secs(90);
const IMAGE: &str = "skiff/python-kubernetes";

/// A two-node dual-stack testbed running pods, with skiff-control on
/// both families' ranges and `namespace` created.
pub fn start(namespace: &str) -> Testbed {
    let mut testbed = Testbed::start_dual_stack(2).unwrap();
    let control_flags = dual_stack_control_args();
    let flags: Vec<&str> = control_flags.iter().map(String::as_str).collect();
    testbed.start_control_for_pods(&flags).unwrap();
    apply(
        &testbed,
        &json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace } }),
    );
    testbed
}

pub fn apply(testbed: &Testbed, object: &Value) {
    testbed.kubectl_ok(&["apply", "-f", "-"], &object.to_string());
}

/// `kubectl <args>` as JSON; `None` while it fails (the object is not
/// there yet), for polling.
pub fn get(testbed: &Testbed, args: &[&str]) -> Option<Value> {
    let out = testbed.run_kubectl(args, "").ok()?;
    serde_json::from_str(&out).ok()
}

/// A pod that runs `command` once on `node`.
pub fn pod(namespace: &str, name: &str, node: &str, labels: Value, command: Vec<&str>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "main", "image": IMAGE, "command": command }],
        },
    })
}

/// Runs `command` as pod `name` on node1 until it exits, asserts that it
/// succeeded, and returns the pod as it ended and its output.
pub fn run_client(
    testbed: &Testbed,
    namespace: &str,
    name: &str,
    command: Vec<&str>,
) -> (Value, String) {
    apply(testbed, &pod(namespace, name, "node1", json!({}), command));
    finished(testbed, namespace, name)
}

/// Waits for pod `name` to exit, asserts that it succeeded, and returns
/// the pod as it ended and its output.
pub fn finished(testbed: &Testbed, namespace: &str, name: &str) -> (Value, String) {
    let pod = eventually(&format!("pod {name} to finish"), TIMEOUT, || {
        let pod = get(
            testbed,
            &["get", "pod", name, "-n", namespace, "-o", "json"],
        )?;
        matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
        .then_some(pod)
    });
    let logs = testbed.kubectl_ok(&["logs", name, "-n", namespace], "");
    assert_eq!(pod["status"]["phase"], "Succeeded", "{logs}\n{pod:#}");
    (pod, logs)
}
