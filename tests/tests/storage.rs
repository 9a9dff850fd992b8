//! A PersistentVolumeClaim end to end, every real piece together: etcd,
//! skiff-control (the default StorageClass `local-path`, the scheduler, the
//! volume binder and the local-path provisioner), two agents running pods
//! in containers, and the real `kubectl`. A writer pod's data outlives it;
//! the next pod lands on the volume's node and reads it; deleting the claim
//! deletes the volume's directory on that node.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::time::Duration;

use serde_json::Value;
use skiff_tests::{ScratchDir, Testbed};

const TIMEOUT: Duration = Duration::from_secs(90);

/// Polls `check` until it yields a value; panics after `TIMEOUT`.
fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    skiff_tests::eventually(what, TIMEOUT, check)
}

const CLAIM: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: ["ReadWriteOnce"]
  resources:
    requests:
      storage: 10Mi
"#;

/// A pod with the claim mounted at /data, running `script`.
fn pod(name: &str, script: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: skiff/busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "{script}"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: data
"#
    )
}

fn phase(testbed: &Testbed, pod: &str) -> Value {
    testbed.kubectl_json(&["get", "pod", pod])["status"]["phase"].clone()
}

#[test]
fn claim_data_outlives_its_pod_on_the_volume_node() {
    let root = ScratchDir::new("skiff-local-path");
    let mut testbed = Testbed::start_running_pods(2).unwrap();
    let root_flag = format!("--local-path-root={}", root.path().display());
    testbed
        .start_control(&["--leader-elect=false", &root_flag])
        .unwrap();

    testbed.kubectl_ok(&["apply", "-f", "-"], CLAIM);
    testbed.kubectl_ok(
        &["apply", "-f", "-"],
        &pod("writer", "echo kept-across-pods > /data/note"),
    );
    eventually("the writer done", || {
        (phase(&testbed, "writer") == "Succeeded").then_some(())
    });
    let writer = testbed.kubectl_json(&["get", "pod", "writer"]);
    let node = writer["spec"]["nodeName"].as_str().unwrap().to_owned();
    let claim = testbed.kubectl_json(&["get", "pvc", "data"]);
    assert_eq!(claim["spec"]["storageClassName"], "local-path");
    assert_eq!(claim["status"]["phase"], "Bound");
    let volume_name = claim["spec"]["volumeName"].as_str().unwrap().to_owned();
    let directory = root.path().join(&volume_name);
    assert_eq!(
        std::fs::read_to_string(directory.join("note")).unwrap(),
        "kept-across-pods\n"
    );
    let volume = testbed.kubectl_json(&["get", "pv", &volume_name]);
    assert_eq!(
        volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
            [0],
        node.as_str()
    );

    testbed.kubectl_ok(&["delete", "pod", "writer"], "");
    testbed.kubectl_ok(&["apply", "-f", "-"], &pod("reader", "cat /data/note"));
    eventually("the reader done", || {
        (phase(&testbed, "reader") == "Succeeded").then_some(())
    });
    let reader = testbed.kubectl_json(&["get", "pod", "reader"]);
    assert_eq!(reader["spec"]["nodeName"], node.as_str());
    assert_eq!(
        testbed.kubectl_ok(&["logs", "reader"], ""),
        "kept-across-pods\n"
    );

    // reclaimPolicy Delete: a helper pod on the node removes the directory,
    // then the volume goes.
    testbed.kubectl_ok(&["delete", "pod", "reader"], "");
    testbed.kubectl_ok(&["delete", "pvc", "data"], "");
    eventually("the volume deleted", || {
        let volumes = testbed.kubectl_json(&["get", "pv"]);
        let empty = volumes["items"].as_array().is_some_and(Vec::is_empty);
        empty.then_some(())
    });
    assert!(
        !directory.exists(),
        "{} is still there",
        directory.display()
    );
}
