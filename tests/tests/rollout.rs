//! Rollouts through the real kubectl against skiff-control and agents
//! running pods: a Deployment's revision history (`kubectl rollout
//! history`), rollbacks that bring back the earlier ReplicaSet (`rollout
//! undo`, `--to-revision`), pause and resume, and a rollout that exceeds
//! its progress deadline; then kubernetes/examples' legacy guestbook, whose
//! ReplicationControllers bring up their pods and scale to zero.
//!
//! Runs as root; clusters are serialised by the harness's lock. Bringing a
//! cluster up takes much of the time, so one cluster runs both steps; their
//! objects are apart by name and label.
use std::time::Duration;

use skiff_tests::Testbed;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Three images that all have a shell and `sleep` (busybox underneath).
const IMAGES: [&str; 3] = ["skiff/busybox", "skiff/iperf3", "redis"];

fn eventually<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    skiff_tests::eventually(what, TIMEOUT, check)
}

fn deployment(name: &str, image: &str, extra_spec: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
{extra_spec}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: {image}
        imagePullPolicy: Never
        command: ["sh", "-c", "sleep 3600"]
"#
    )
}

/// The running (not terminating) pods of `app`: (image, ready, owner uid).
fn pods(testbed: &Testbed, app: &str) -> Vec<(String, bool, String)> {
    let list = testbed.kubectl_json(&["get", "pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .map(|pod| {
            let ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            (
                pod["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                ready,
                pod["metadata"]["ownerReferences"][0]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

/// Waits until exactly the Deployment's 2 pods run `image`, ready, from
/// one ReplicaSet; that ReplicaSet's uid.
fn settled_on(testbed: &Testbed, app: &str, image: &str) -> String {
    eventually(&format!("2 ready {app} pods of {image}"), || {
        let pods = pods(testbed, app);
        let all = pods.len() == 2
            && pods
                .iter()
                .all(|(i, ready, owner)| i == image && *ready && *owner == pods[0].2);
        all.then(|| pods[0].2.clone())
    })
}

fn rollout_status(testbed: &Testbed, name: &str) {
    testbed.kubectl_ok(
        &[
            "rollout",
            "status",
            &format!("deploy/{name}"),
            "--timeout=60s",
        ],
        "",
    );
}

/// The Deployment's ReplicaSets: (revision, uid, image, revision-history).
fn replica_sets(testbed: &Testbed, app: &str) -> Vec<(u64, String, String, String)> {
    let list = testbed.kubectl_json(&["get", "rs", "-l", &format!("app={app}")]);
    let mut sets: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            let annotation = |key: &str| {
                rs["metadata"]["annotations"][key]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            };
            (
                annotation("deployment.kubernetes.io/revision")
                    .parse()
                    .unwrap_or(0),
                rs["metadata"]["uid"].as_str().unwrap().to_owned(),
                rs["spec"]["template"]["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                annotation("deployment.kubernetes.io/revision-history"),
            )
        })
        .collect();
    sets.sort();
    sets
}

fn progressing(testbed: &Testbed, name: &str) -> (String, String) {
    let deployment = testbed.kubectl_json(&["get", "deploy", name]);
    deployment["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Progressing"))
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_owned(),
                c["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .unwrap_or_default()
}

fn rollout_history_undo_pause_and_deadline(testbed: &Testbed) {
    // An image no node has, never pulled: the rollout cannot progress.
    testbed.kubectl_ok(
        &["apply", "-f", "-"],
        &deployment("stuck", "skiff/absent", "  progressDeadlineSeconds: 10"),
    );

    // Ready pods count as available only after minReadySeconds.
    testbed.kubectl_ok(
        &["apply", "-f", "-"],
        &deployment("slow", IMAGES[0], "  minReadySeconds: 6"),
    );
    let counts = |kind: &str| {
        let object = testbed.kubectl_json(&["get", kind, "-l", "app=slow"]);
        let status = &object["items"][0]["status"];
        (
            status["readyReplicas"].clone(),
            status["availableReplicas"].clone(),
        )
    };
    let ready = eventually("slow's pods ready", || {
        let deployment = testbed.kubectl_json(&["get", "deploy", "slow"]);
        (deployment["status"]["readyReplicas"] == 2).then(|| deployment["status"].clone())
    });
    assert_eq!(ready["availableReplicas"], 0, "{ready}");
    assert_eq!(counts("rs"), (2.into(), 0.into()));
    eventually("slow's pods available", || {
        (counts("rs") == (2.into(), 2.into())).then_some(())
    });
    rollout_status(testbed, "slow");

    testbed.kubectl_ok(&["apply", "-f", "-"], &deployment("web", IMAGES[0], ""));
    rollout_status(testbed, "web");
    let mut owners = vec![settled_on(testbed, "web", IMAGES[0])];
    for (index, image) in IMAGES.iter().enumerate().skip(1) {
        testbed.kubectl_ok(&["set", "image", "deploy/web", &format!("app={image}")], "");
        testbed.kubectl_ok(
            &[
                "annotate",
                "--overwrite",
                "deploy/web",
                &format!("kubernetes.io/change-cause=image {image}"),
            ],
            "",
        );
        rollout_status(testbed, "web");
        owners.push(settled_on(testbed, "web", image));
        assert_ne!(
            owners[index],
            owners[index - 1],
            "a new ReplicaSet per image"
        );
    }
    let sets = replica_sets(testbed, "web");
    let revisions: Vec<(u64, &str)> = sets.iter().map(|s| (s.0, s.2.as_str())).collect();
    assert_eq!(revisions, [(1, IMAGES[0]), (2, IMAGES[1]), (3, IMAGES[2])]);
    let history = testbed.kubectl_ok(&["rollout", "history", "deploy/web"], "");
    let listed: Vec<&str> = history
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|first| first.parse::<u64>().is_ok())
        .collect();
    assert_eq!(listed, ["1", "2", "3"], "{history}");
    assert!(history.contains("image skiff/iperf3"), "{history}");
    let second = testbed.kubectl_ok(&["rollout", "history", "deploy/web", "--revision=2"], "");
    assert!(second.contains(IMAGES[1]), "{second}");
    let deployment = testbed.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(
        deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );

    // Undo: back to revision 2's ReplicaSet, which becomes revision 4.
    testbed.kubectl_ok(&["rollout", "undo", "deploy/web"], "");
    rollout_status(testbed, "web");
    assert_eq!(settled_on(testbed, "web", IMAGES[1]), owners[1]);
    let sets = replica_sets(testbed, "web");
    assert_eq!(sets.len(), 3, "no new ReplicaSet: {sets:?}");
    assert_eq!(
        sets[2],
        (4, owners[1].clone(), IMAGES[1].into(), "2".into())
    );

    // And to revision 1's, which becomes 5.
    testbed.kubectl_ok(&["rollout", "undo", "deploy/web", "--to-revision=1"], "");
    rollout_status(testbed, "web");
    assert_eq!(settled_on(testbed, "web", IMAGES[0]), owners[0]);
    let sets = replica_sets(testbed, "web");
    assert_eq!(sets.len(), 3, "no new ReplicaSet: {sets:?}");
    assert_eq!(
        sets[2],
        (5, owners[0].clone(), IMAGES[0].into(), "1".into())
    );

    // Paused, a new template does not roll out; resumed, it does.
    testbed.kubectl_ok(&["rollout", "pause", "deploy/web"], "");
    testbed.kubectl_ok(
        &["set", "image", "deploy/web", &format!("app={}", IMAGES[2])],
        "",
    );
    eventually("the paused change seen", || {
        let deployment = testbed.kubectl_json(&["get", "deploy", "web"]);
        (deployment["status"]["observedGeneration"] == deployment["metadata"]["generation"]
            && progressing(testbed, "web") == ("Unknown".into(), "DeploymentPaused".into()))
            .then_some(())
    });
    assert_eq!(settled_on(testbed, "web", IMAGES[0]), owners[0]);
    testbed.kubectl_ok(&["rollout", "resume", "deploy/web"], "");
    rollout_status(testbed, "web");
    assert_eq!(settled_on(testbed, "web", IMAGES[2]), owners[2]);

    // A shorter history: only the newest old ReplicaSet stays.
    testbed.kubectl_ok(
        &[
            "patch",
            "deploy/web",
            "--type=merge",
            "-p",
            r#"{"spec":{"revisionHistoryLimit":1}}"#,
        ],
        "",
    );
    eventually("old ReplicaSets beyond the limit deleted", || {
        let uids: Vec<String> = replica_sets(testbed, "web")
            .into_iter()
            .map(|set| set.1)
            .collect();
        (uids == [owners[0].clone(), owners[2].clone()]).then_some(())
    });

    // The stuck Deployment has long passed its 10 s.
    eventually("stuck's progress deadline exceeded", || {
        (progressing(testbed, "stuck") == ("False".into(), "ProgressDeadlineExceeded".into()))
            .then_some(())
    });
    let output = testbed
        .kubectl()
        .unwrap()
        .args(["rollout", "status", "deploy/stuck", "--timeout=30s"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("deployment \"stuck\" exceeded its progress deadline"),
        "{stderr}"
    );
}

fn legacy_guestbook_replication_controllers(testbed: &Testbed) {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/workloads/guestbook-legacy.yaml"
    ))
    .unwrap();
    testbed.kubectl_ok(&["apply", "-f", "-"], &example);

    let ready = |selector: &str| {
        let list = testbed.kubectl_json(&["get", "pods", "-l", selector]);
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pod| {
                pod["metadata"]["deletionTimestamp"].is_null()
                    && pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController"
                    && pod["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
            })
            .count()
    };
    for (name, selector, replicas) in [
        ("redis-master", "app=redis,role=master", 1),
        ("redis-replica", "app=redis,role=replica", 2),
        ("frontend", "app=guestbook", 3),
    ] {
        eventually(&format!("{replicas} ready {name} pods"), || {
            let rc = testbed.kubectl_json(&["get", "rc", name]);
            (ready(selector) == replicas && rc["status"]["readyReplicas"] == replicas).then_some(())
        });
    }
    let rc = testbed.kubectl_json(&["get", "rc", "frontend"]);
    assert_eq!(
        rc["spec"]["selector"]["tier"], "frontend",
        "defaulted from the template"
    );
    // The replicas follow the master through its Service.
    let replicas = testbed.kubectl_json(&["get", "pods", "-l", "role=replica"]);
    let replica = replicas["items"][0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("a replica linked to the master", || {
        let info = testbed
            .run_kubectl(
                &["exec", &replica, "--", "redis-cli", "info", "replication"],
                "",
            )
            .ok()?;
        info.contains("master_link_status:up").then_some(())
    });

    testbed.kubectl_ok(&["scale", "rc", "frontend", "--replicas=0"], "");
    eventually("the frontend pods gone", || {
        let list = testbed.kubectl_json(&["get", "pods", "-l", "app=guestbook"]);
        list["items"].as_array().unwrap().is_empty().then_some(())
    });
    let rc = testbed.kubectl_json(&["get", "rc", "frontend"]);
    assert_eq!(rc["status"]["replicas"], 0);
    // The pods of a deleted controller go with it.
    testbed.kubectl_ok(&["delete", "rc", "redis-replica"], "");
    eventually("the replica pods gone", || {
        let list = testbed.kubectl_json(&["get", "pods", "-l", "role=replica"]);
        list["items"].as_array().unwrap().is_empty().then_some(())
    });

    // Bad input is refused, naming the field.
    let refused = testbed
        .run_kubectl(
            &["apply", "-f", "-"],
            "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: bad\nspec:\n  selector:\n    app: x\n",
        )
        .unwrap_err();
    assert!(
        format!("{refused:#}").contains("spec.template: Required value"),
        "{refused:#}"
    );
}

#[test]
fn one_cluster_rolls_out_deployments_and_runs_the_legacy_guestbook() {
    let mut testbed = Testbed::start_running_pods(2).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();
    rollout_history_undo_pause_and_deadline(&testbed);
    legacy_guestbook_replication_controllers(&testbed);
}
