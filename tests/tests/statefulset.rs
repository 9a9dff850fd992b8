//! StatefulSets end to end with the real `kubectl` on two nodes: pods come
//! up in order with their own claims (local-path), a deleted pod returns
//! under its name on the same claim with its data, scaling down removes
//! the highest ordinals first, a template change rolls out, a set whose
//! selector misses its template is refused, and the cassandra example
//! applies and runs.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::time::Duration;

use skiff_tests::{ScratchDir, Testbed};

const TIMEOUT: Duration = Duration::from_secs(60);

fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    skiff_tests::eventually(what, TIMEOUT, check)
}

fn start(name: &str) -> (Testbed, ScratchDir) {
    let root = ScratchDir::new(&format!("skiff-sts-{name}"));
    let mut testbed = Testbed::start_running_pods(2).unwrap();
    let root_flag = format!("--local-path-root={}", root.path().display());
    testbed
        .start_control(&["--leader-elect=false", &root_flag])
        .unwrap();
    (testbed, root)
}

/// A headless Service and a StatefulSet whose pods keep a token, made on
/// their first start, in their claim and print it on every start.
const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: skiff/busybox
        imagePullPolicy: Never
        command:
        - sh
        - -c
        - |
          [ -f /data/token ] || cat /proc/sys/kernel/random/uuid > /data/token
          echo "token=$(cat /data/token)"
          trap 'exit 0' TERM
          while true; do sleep 1; done
        volumeMounts:
        - name: www
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 10Mi
"#;

/// The set's pods by ordinal: (name, ready, terminating).
fn pods(testbed: &Testbed, app: &str) -> Vec<(String, bool, bool)> {
    let list = testbed.kubectl_json(&["get", "pods", "-l", &format!("app={app}")]);
    let mut pods: Vec<(String, bool, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pod| {
            let ready = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                pod["metadata"]["name"].as_str().unwrap().to_owned(),
                ready && pod["status"]["phase"] == "Running",
                !pod["metadata"]["deletionTimestamp"].is_null(),
            )
        })
        .collect();
    pods.sort();
    pods
}

/// The pods present are web-0..web-k, each below the last one ready.
fn assert_ordered(pods: &[(String, bool, bool)]) {
    for (i, (name, _, _)) in pods.iter().enumerate() {
        assert_eq!(name, &format!("web-{i}"), "pods are not a prefix: {pods:?}");
    }
    if let Some((_, below)) = pods.split_last() {
        assert!(
            below.iter().all(|(_, ready, _)| *ready),
            "a pod started before those below it were ready: {pods:?}"
        );
    }
}

/// The messages of the events about the StatefulSet `name`, oldest first
/// (event names end in the nanosecond they were made, in hex).
fn set_events(testbed: &Testbed, name: &str) -> Vec<String> {
    let list = testbed.kubectl_json(&["get", "events"]);
    let mut events: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| {
            event["involvedObject"]["kind"] == "StatefulSet"
                && event["involvedObject"]["name"] == name
        })
        .map(|event| {
            let id = event["metadata"]["name"].as_str().unwrap_or_default();
            let nanos = id.rsplit('.').next().unwrap_or_default();
            (
                format!("{nanos:0>20}"),
                event["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    events.sort();
    events.into_iter().map(|(_, message)| message).collect()
}

/// The revision numbers `kubectl rollout history` lists for the set.
fn revisions(testbed: &Testbed, set: &str) -> Vec<String> {
    let history = testbed.kubectl_ok(&["rollout", "history", &format!("statefulset/{set}")], "");
    history
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.parse::<u32>().is_ok())
        .map(str::to_owned)
        .collect()
}

fn token(testbed: &Testbed, pod: &str) -> String {
    eventually(&format!("{pod}'s token"), || {
        let logs = testbed.run_kubectl(&["logs", pod], "").ok()?;
        logs.lines()
            .find_map(|line| line.strip_prefix("token="))
            .map(str::to_owned)
    })
}

#[test]
fn statefulset_identity_order_storage_and_rollout() {
    let (testbed, _root) = start("web");
    testbed.kubectl_ok(&["apply", "-f", "-"], WEB);

    // Up in order: at every look the pods are a prefix, all but the last ready.
    eventually("web-0..2 ready in order", || {
        let pods = pods(&testbed, "web");
        assert_ordered(&pods);
        (pods.len() == 3 && pods.iter().all(|(_, ready, _)| *ready)).then_some(())
    });
    let web1 = testbed.kubectl_json(&["get", "pod", "web-1"]);
    assert_eq!(web1["spec"]["hostname"], "web-1");
    assert_eq!(web1["spec"]["subdomain"], "web");
    let labels = &web1["metadata"]["labels"];
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "1");
    let claim = testbed.kubectl_json(&["get", "pvc", "www-web-1"]);
    assert_eq!(claim["status"]["phase"], "Bound");
    let claim_uid = claim["metadata"]["uid"].clone();
    let first_token = token(&testbed, "web-1");
    let created = set_events(&testbed, "web");
    for message in [
        "create Claim www-web-0 Pod web-0 in StatefulSet web success",
        "create Pod web-0 in StatefulSet web successful",
        "create Pod web-1 in StatefulSet web successful",
        "create Pod web-2 in StatefulSet web successful",
    ] {
        assert!(
            created.iter().any(|m| m == message),
            "no {message}: {created:?}"
        );
    }

    // A deleted pod returns under its name, on the same claim, with its data.
    let old_uid = web1["metadata"]["uid"].clone();
    testbed.kubectl_ok(&["delete", "pod", "web-1"], "");
    eventually("web-1 back and ready", || {
        let pod = testbed.kubectl_json(&["get", "pod", "web-1"]);
        let ready = pods(&testbed, "web")
            .iter()
            .any(|(name, ready, _)| name == "web-1" && *ready);
        (pod["metadata"]["uid"] != old_uid && ready).then_some(())
    });
    let claim = testbed.kubectl_json(&["get", "pvc", "www-web-1"]);
    assert_eq!(claim["metadata"]["uid"], claim_uid);
    assert_eq!(token(&testbed, "web-1"), first_token);

    // A template change rolls out; the history has both revisions.
    testbed.kubectl_ok(&["set", "env", "statefulset/web", "ROUND=2"], "");
    testbed.kubectl_ok(
        &["rollout", "status", "statefulset/web", "--timeout=60s"],
        "",
    );
    let set = testbed.kubectl_json(&["get", "statefulset", "web"]);
    let status = &set["status"];
    assert_eq!(status["updatedReplicas"], 3);
    assert_eq!(status["readyReplicas"], 3);
    assert_eq!(status["currentRevision"], status["updateRevision"]);
    for name in ["web-0", "web-1", "web-2"] {
        let pod = testbed.kubectl_json(&["get", "pod", name]);
        assert_eq!(
            pod["metadata"]["labels"]["controller-revision-hash"],
            status["updateRevision"]
        );
        assert_eq!(pod["spec"]["containers"][0]["env"][0]["value"], "2");
    }
    assert_eq!(revisions(&testbed, "web"), ["1", "2"]);
    assert_eq!(token(&testbed, "web-1"), first_token);

    // Undo goes back to the first template, renumbered as the newest.
    testbed.kubectl_ok(&["rollout", "undo", "statefulset/web"], "");
    testbed.kubectl_ok(
        &["rollout", "status", "statefulset/web", "--timeout=60s"],
        "",
    );
    let pod = testbed.kubectl_json(&["get", "pod", "web-0"]);
    assert!(pod["spec"]["containers"][0]["env"].is_null(), "{pod}");
    assert_eq!(revisions(&testbed, "web"), ["2", "3"]);

    // Scale down: web-2 goes before web-1, one at a time; claims stay.
    testbed.kubectl_ok(&["scale", "statefulset/web", "--replicas=1"], "");
    eventually("scaled down to web-0", || {
        let pods = pods(&testbed, "web");
        for (i, (name, _, _)) in pods.iter().enumerate() {
            assert_eq!(
                name,
                &format!("web-{i}"),
                "not removed from the top: {pods:?}"
            );
        }
        (pods.len() == 1).then_some(())
    });
    let events = set_events(&testbed, "web");
    let at = |text: &str| {
        events
            .iter()
            .rposition(|m| m == text)
            .unwrap_or_else(|| panic!("no {text}: {events:?}"))
    };
    assert!(
        at("delete Pod web-2 in StatefulSet web successful")
            < at("delete Pod web-1 in StatefulSet web successful"),
        "{events:?}"
    );
    for claim in ["www-web-1", "www-web-2"] {
        testbed.kubectl_ok(&["get", "pvc", claim], "");
    }

    // whenScaled: Delete: the claim of a pod scaled away goes with it.
    testbed.kubectl_ok(
        &[
            "patch",
            "statefulset",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete"}}}"#,
        ],
        "",
    );
    testbed.kubectl_ok(&["scale", "statefulset/web", "--replicas=0"], "");
    eventually("www-web-0 deleted with web-0", || {
        let claims = testbed.kubectl_json(&["get", "pvc"]);
        let names: Vec<&str> = claims["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|claim| claim["metadata"]["name"].as_str())
            .collect();
        (names == ["www-web-1", "www-web-2"]).then_some(())
    });

    // Fields kube-apiserver fixes at creation stay fixed.
    let refused = testbed
        .run_kubectl(
            &[
                "patch",
                "statefulset",
                "web",
                "--type=merge",
                "-p",
                r#"{"spec":{"serviceName":"other"}}"#,
            ],
            "",
        )
        .expect_err("serviceName is immutable");
    assert!(
        format!("{refused:#}").contains("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template'"),
        "{refused:#}"
    );

    // A selector that misses the template: 422 naming the field, nothing stored.
    let bad = WEB
        .split("---")
        .nth(1)
        .unwrap()
        .replace("name: web\n", "name: bad\n")
        .replace("      app: web\n  template", "      app: other\n  template");
    let error = testbed
        .run_kubectl(&["apply", "-f", "-"], &bad)
        .expect_err("a set whose selector misses its template is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("spec.template.metadata.labels")
            && message.contains("`selector` does not match template `labels`"),
        "{message}"
    );
    let missing = testbed
        .run_kubectl(&["get", "statefulset", "bad"], "")
        .expect_err("nothing stored");
    assert!(format!("{missing:#}").contains("NotFound"), "{missing:#}");
}

#[test]
fn cassandra_example_comes_up() {
    let (testbed, _root) = start("cassandra");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/workloads/cassandra-statefulset.yaml"
    ))
    .unwrap();
    let applied = testbed.kubectl_ok(&["apply", "-f", "-"], &example);
    assert!(
        applied.contains("statefulset.apps/cassandra created"),
        "{applied}"
    );
    testbed.kubectl_ok(
        &[
            "rollout",
            "status",
            "statefulset/cassandra",
            "--timeout=60s",
        ],
        "",
    );
    for n in 0..3 {
        let claim = testbed.kubectl_json(&["get", "pvc", &format!("cassandra-data-cassandra-{n}")]);
        assert_eq!(claim["status"]["phase"], "Bound");
        let pod = testbed.kubectl_json(&["get", "pod", &format!("cassandra-{n}")]);
        assert_eq!(pod["spec"]["subdomain"], "cassandra");
    }
}
