//! End to end: pod volumes with skiff-control, a skiff-agent running pods
//! and the real `kubectl`. A pod whose ConfigMap is missing waits with
//! `CreateContainerConfigError` naming it and starts once it is created,
//! one whose hostPath is not of its `type` waits naming the path;
//! two containers share an emptyDir (read-only for one of them); a
//! ConfigMap update reaches the file a container reads; a deleted pod's
//! volumes leave the node.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::{
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use skiff_tests::Testbed;

/// Kubernetes promises ConfigMap updates in a volume within a minute.
const TIMEOUT: Duration = Duration::from_secs(60);

fn start() -> Testbed {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();
    testbed
}

/// Runs kubectl with `input` on stdin; Err quotes its stderr.
fn try_kubectl(testbed: &Testbed, args: &[&str], input: &str) -> Result<String, String> {
    testbed
        .run_kubectl(args, input)
        .map_err(|error| error.to_string())
}

/// Runs kubectl; panics with its stderr if it fails.
fn kubectl(testbed: &Testbed, args: &[&str], input: &str) -> String {
    try_kubectl(testbed, args, input)
        .unwrap_or_else(|stderr| panic!("kubectl {args:?} failed: {stderr}"))
}

fn apply(testbed: &Testbed, object: &Value) {
    kubectl(testbed, &["apply", "-f", "-"], &object.to_string());
}

fn get_pod(testbed: &Testbed, name: &str) -> Value {
    let out = kubectl(testbed, &["get", "pod", name, "-o", "json"], "");
    serde_json::from_str(&out).expect("kubectl prints JSON")
}

/// Polls `check` until it yields a value; panics after `TIMEOUT` with
/// what the last check saw.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("timed out waiting for {what}; last seen: {seen}")
            }
            Err(_) => thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn config_map(color: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "settings", "namespace": "default" },
        "data": { "color": color },
    })
}

fn pod(name: &str, containers: Value, volumes: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": containers,
            "volumes": volumes,
        },
    })
}

fn shell(name: &str, script: &str, mounts: Value) -> Value {
    json!({
        "name": name,
        "image": "skiff/busybox",
        "command": ["sh", "-c", script],
        "volumeMounts": mounts,
    })
}

fn state(pod: &Value, container: &str) -> Value {
    let statuses = pod["status"]["containerStatuses"].as_array();
    (statuses.into_iter().flatten())
        .find(|s| s["name"] == container)
        .map_or(Value::Null, |s| s["state"].clone())
}

/// Where the agent keeps the pod's volumes on the node.
fn volumes_dir(testbed: &Testbed, pod: &Value) -> PathBuf {
    let uid = pod["metadata"]["uid"].as_str().expect("the pod has a uid");
    testbed.agent_state_dir(1).join("pods").join(uid)
}

/// Waits for `container` of pod `name` to wait with `reason` and a
/// message that holds `naming`.
fn wait_for_waiting(testbed: &Testbed, name: &str, container: &str, reason: &str, naming: &str) {
    eventually(&format!("{name}: {reason} naming {naming}"), || {
        let waiting = state(&get_pod(testbed, name), container)["waiting"].clone();
        let message = waiting["message"].as_str().unwrap_or_default();
        match waiting["reason"] == reason && message.contains(naming) {
            true => Ok(()),
            false => Err(waiting.to_string()),
        }
    });
}

#[test]
fn a_missing_config_map_or_mismatched_host_path_holds_the_container() {
    let testbed = start();
    let mounts = json!([{ "name": "config", "mountPath": "/etc/config" }]);
    apply(
        &testbed,
        &pod(
            "waiter",
            json!([shell("app", "sleep 3600", mounts)]),
            json!([{ "name": "config", "configMap": { "name": "settings" } }]),
        ),
    );
    // A hostPath that is not what its type says holds its pod too.
    let missing = testbed.agent_state_dir(1).join("no-such-dir");
    let missing = missing.to_str().unwrap();
    apply(
        &testbed,
        &pod(
            "mismatch",
            json!([shell(
                "app",
                "sleep 3600",
                json!([{ "name": "host", "mountPath": "/host" }])
            )]),
            json!([{ "name": "host", "hostPath": { "path": missing, "type": "Directory" } }]),
        ),
    );
    wait_for_waiting(
        &testbed,
        "waiter",
        "app",
        "CreateContainerConfigError",
        "configmap default/settings not found",
    );
    wait_for_waiting(&testbed, "mismatch", "app", "CreateContainerError", missing);

    apply(&testbed, &config_map("blue"));
    let running = eventually("the container to start", || {
        let pod = get_pod(&testbed, "waiter");
        match state(&pod, "app")["running"].is_object() {
            true => Ok(pod),
            false => Err(state(&pod, "app").to_string()),
        }
    });
    let dir = volumes_dir(&testbed, &running);
    let file = dir.join("volumes/kubernetes.io~configmap/config/color");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "blue");

    kubectl(&testbed, &["delete", "pod", "waiter", "--wait=true"], "");
    eventually("the pod's volumes to leave the node", || {
        match dir.exists() {
            false => Ok(()),
            true => Err(format!("{} is still there", dir.display())),
        }
    });
}

#[test]
fn containers_share_an_empty_dir_and_localhost_and_see_config_map_updates() {
    let testbed = start();
    apply(&testbed, &config_map("blue"));
    let writer = shell(
        "writer",
        "echo hello > /shared/greeting; exec nc -ll -p 7000 -e cat /shared/greeting",
        json!([{ "name": "shared", "mountPath": "/shared" }]),
    );
    let reader = shell(
        "reader",
        "while true; do touch /shared/mine 2>/dev/null && w=rw || w=ro; echo \"$(cat /shared/greeting) $(cat /etc/config/color) $w $(nc 127.0.0.1 7000 </dev/null)\"; sleep 1; done",
        json!([
            { "name": "shared", "mountPath": "/shared", "readOnly": true },
            { "name": "config", "mountPath": "/etc/config" },
        ]),
    );
    apply(
        &testbed,
        &pod(
            "pair",
            json!([writer, reader]),
            json!([
                { "name": "shared", "emptyDir": {} },
                { "name": "config", "configMap": { "name": "settings" } },
            ]),
        ),
    );
    // Before the reader starts, kubectl says it has no logs yet.
    let logs = || try_kubectl(&testbed, &["logs", "pair", "-c", "reader", "--tail=1"], "");
    eventually(
        "the reader to see the writer's file, the ConfigMap and the writer on localhost",
        || {
            let last = logs()?;
            match last.trim() == "hello blue ro hello" {
                true => Ok(()),
                false => Err(last),
            }
        },
    );
    let updated = Instant::now();
    apply(&testbed, &config_map("green"));
    eventually("the ConfigMap update to reach the file", || {
        let last = logs()?;
        match last.trim() == "hello green ro hello" {
            true => Ok(()),
            false => Err(last),
        }
    });
    println!(
        "ConfigMap update reached the container in {:?}",
        updated.elapsed()
    );
}
