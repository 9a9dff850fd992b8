//! DaemonSets end to end with the real `kubectl`: etcd, skiff-control (the
//! DaemonSet controller and the scheduler), agents running the pods. A
//! DaemonSet has a pod on every node, including one whose agent joins
//! later; a nodeSelector keeps it to the labelled node, and off it once
//! the label goes; a new template
//! rolls out node by node until `kubectl rollout status` returns, and
//! `kubectl rollout undo` brings the first one back; a
//! template that would not restart its pods is refused.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::collections::BTreeSet;
use std::time::Duration;

use skiff_tests::Testbed;

const TIMEOUT: Duration = Duration::from_secs(60);

fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    skiff_tests::eventually(what, TIMEOUT, check)
}

/// A DaemonSet `name` of busybox pods that wait (and leave at once on
/// SIGTERM), with `extra` appended to the pod spec and `version` in their
/// environment.
fn daemon_set(name: &str, version: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
spec:
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
      - name: main
        image: skiff/busybox
        imagePullPolicy: Never
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
        env:
        - name: VERSION
          value: "{version}"
{extra}
"#
    )
}

/// The set's running pods that are not being deleted, as (node, revision hash).
fn running_pods(testbed: &Testbed, app: &str) -> Vec<(String, String)> {
    let selector = format!("app={app}");
    let pods = testbed.kubectl_json(&["get", "pods", "-l", &selector]);
    pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter(|pod| pod["status"]["phase"] == "Running")
        .map(|pod| {
            (
                pod["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                pod["metadata"]["labels"]["controller-revision-hash"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn nodes_of(pods: &[(String, String)]) -> BTreeSet<String> {
    pods.iter().map(|(node, _)| node.clone()).collect()
}

fn node_names(testbed: &Testbed, nodes: &[usize]) -> BTreeSet<String> {
    nodes
        .iter()
        .map(|&i| testbed.cluster().node(i).name().to_owned())
        .collect()
}

/// The hash label of the set's newest ControllerRevision.
fn newest_revision_hash(testbed: &Testbed, app: &str) -> String {
    let selector = format!("app={app}");
    let revisions = testbed.kubectl_json(&["get", "controllerrevisions", "-l", &selector]);
    let newest = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|revision| revision["revision"].as_i64())
        .expect("a revision");
    newest["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_daemon_set_covers_every_node_and_rolls_out() {
    let mut testbed = Testbed::start_running_pods_except(3, &[2]).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();

    testbed.kubectl_ok(&["apply", "-f", "-"], &daemon_set("agent", "1", ""));
    let early = node_names(&testbed, &[1, 3]);
    eventually("a pod on each running node", || {
        (nodes_of(&running_pods(&testbed, "agent")) == early).then_some(())
    });

    // Node 2 joins: it gets its pod too.
    testbed.start_agent(2).unwrap();
    let all = node_names(&testbed, &[1, 2, 3]);
    eventually("a pod on the node that joined", || {
        let pods = running_pods(&testbed, "agent");
        (pods.len() == 3 && nodes_of(&pods) == all).then_some(())
    });
    testbed.kubectl_ok(&["rollout", "status", "ds/agent", "--timeout=60s"], "");
    let first = newest_revision_hash(&testbed, "agent");
    assert!(
        running_pods(&testbed, "agent")
            .iter()
            .all(|(_, hash)| *hash == first)
    );
    let status = testbed.kubectl_json(&["get", "ds", "agent"])["status"].clone();
    assert_eq!(status["desiredNumberScheduled"], 3, "{status}");
    assert_eq!(status["numberReady"], 3, "{status}");

    // A new template replaces the pods node by node.
    testbed.kubectl_ok(&["apply", "-f", "-"], &daemon_set("agent", "2", ""));
    testbed.kubectl_ok(&["rollout", "status", "ds/agent", "--timeout=80s"], "");
    let second = newest_revision_hash(&testbed, "agent");
    assert_ne!(first, second);
    eventually("only new pods on every node", || {
        let pods = running_pods(&testbed, "agent");
        (pods.len() == 3 && nodes_of(&pods) == all && pods.iter().all(|(_, hash)| *hash == second))
            .then_some(())
    });
    // Undo: the first template's revision becomes the newest again.
    testbed.kubectl_ok(&["rollout", "undo", "ds/agent"], "");
    testbed.kubectl_ok(&["rollout", "status", "ds/agent", "--timeout=80s"], "");
    assert_eq!(newest_revision_hash(&testbed, "agent"), first);
    eventually("the first template back on every node", || {
        let pods = running_pods(&testbed, "agent");
        (pods.len() == 3 && pods.iter().all(|(_, hash)| *hash == first)).then_some(())
    });

    let events = testbed.kubectl_json(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=DaemonSet",
    ]);
    let reasons: BTreeSet<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["reason"].as_str())
        .collect();
    assert!(
        reasons.is_superset(&BTreeSet::from(["SuccessfulCreate", "SuccessfulDelete"])),
        "{reasons:?}"
    );
}

#[test]
fn a_node_selector_picks_the_nodes_and_bad_templates_are_refused() {
    let mut testbed = Testbed::start_running_pods(2).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();
    let edge = testbed.cluster().node(2).name().to_owned();
    testbed.kubectl_ok(&["label", "node", &edge, "role=edge"], "");

    testbed.kubectl_ok(
        &["apply", "-f", "-"],
        &daemon_set("edge", "1", "      nodeSelector:\n        role: edge"),
    );
    eventually("a pod on the labelled node", || {
        (nodes_of(&running_pods(&testbed, "edge")) == BTreeSet::from([edge.clone()])).then_some(())
    });
    testbed.kubectl_ok(&["rollout", "status", "ds/edge", "--timeout=30s"], "");
    let status = testbed.kubectl_json(&["get", "ds", "edge"])["status"].clone();
    assert_eq!(status["desiredNumberScheduled"], 1, "{status}");
    assert_eq!(running_pods(&testbed, "edge").len(), 1);

    // The node no longer qualifies: its pod goes.
    testbed.kubectl_ok(&["label", "node", &edge, "role-"], "");
    eventually("the pod gone from the unlabelled node", || {
        let pods = testbed.kubectl_json(&["get", "pods", "-l", "app=edge"]);
        let status = testbed.kubectl_json(&["get", "ds", "edge"])["status"].clone();
        (pods["items"].as_array().unwrap().is_empty() && status["desiredNumberScheduled"] == 0)
            .then_some(())
    });

    let error = testbed
        .run_kubectl(
            &["apply", "-f", "-"],
            &daemon_set("never", "1", "      restartPolicy: Never"),
        )
        .expect_err("restartPolicy Never is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains(
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
        ),
        "{message}"
    );
    let stored = testbed
        .run_kubectl(&["get", "ds", "never"], "")
        .expect_err("nothing is stored");
    assert!(format!("{stored:#}").contains("NotFound"), "{stored:#}");
}
