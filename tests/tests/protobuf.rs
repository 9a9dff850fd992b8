//! kubectl's generators (`create namespace|configmap|secret|deployment|job`,
//! `run`) send their objects in Kubernetes' protobuf and read the answer in
//! it: each succeeds against skiff-control and the object reads back right
//! as JSON.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::time::Duration;

use serde_json::Value;
use skiff_tests::Testbed;

const TIMEOUT: Duration = Duration::from_secs(60);

fn kubectl(testbed: &Testbed, args: &[&str]) -> String {
    testbed
        .run_kubectl(args, "")
        .unwrap_or_else(|err| panic!("kubectl {args:?} failed: {err:#}"))
}

fn get_json(testbed: &Testbed, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(testbed, &args)).expect("kubectl prints JSON")
}

#[test]
fn kubectl_generators_speak_protobuf() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();

    assert_eq!(
        kubectl(&testbed, &["create", "namespace", "x"]),
        "namespace/x created\n"
    );
    assert_eq!(get_json(&testbed, &["get", "namespace", "x"])["status"]["phase"], "Active");

    kubectl(&testbed, &["create", "configmap", "c", "--from-literal=a=b"]);
    let config_map = get_json(&testbed, &["get", "configmap", "c"]);
    assert_eq!(config_map["data"], serde_json::json!({ "a": "b" }));

    kubectl(&testbed, &["create", "secret", "generic", "s", "--from-literal=p=q"]);
    let secret = get_json(&testbed, &["get", "secret", "s"]);
    assert_eq!(secret["data"], serde_json::json!({ "p": "cQ==" }));

    kubectl(
        &testbed,
        &["create", "deployment", "d", "--image=skiff/busybox", "--replicas=2"],
    );
    let deployment = get_json(&testbed, &["get", "deployment", "d"]);
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["selector"]["matchLabels"]["app"], "d");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "skiff/busybox"
    );
    // The zero time client-go sends is no time: the server sets it.
    assert!(deployment["metadata"]["creationTimestamp"].is_string());

    kubectl(
        &testbed,
        &["create", "job", "j", "--image=skiff/busybox", "--", "true"],
    );
    let job = get_json(&testbed, &["get", "job", "j"]);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(["true"])
    );
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");

    kubectl(
        &testbed,
        &[
            "run",
            "p",
            "--image=skiff/busybox",
            "--image-pull-policy=Never",
            "--",
            "sleep",
            "1",
        ],
    );
    let pod = get_json(&testbed, &["get", "pod", "p"]);
    assert_eq!(pod["spec"]["containers"][0]["args"], serde_json::json!(["sleep", "1"]));
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(pod["metadata"]["labels"]["run"], "p");
    skiff_tests::eventually("the pod p to run", TIMEOUT, || {
        (get_json(&testbed, &["get", "pod", "p"])["status"]["phase"] == "Running").then_some(())
    });
}
