//! kubectl's generators (`create namespace|configmap|secret|deployment|job`,
//! `run`) send their objects in Kubernetes' protobuf and read the answer in
//! it: each succeeds against skiff-control and the object reads back right
//! as JSON.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;

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
    let kubeconfig = testbed.start_control(&[]).unwrap();

    assert_eq!(
        kubectl(&testbed, &["create", "namespace", "x"]),
        "namespace/x created\n"
    );
    assert_eq!(
        get_json(&testbed, &["get", "namespace", "x"])["status"]["phase"],
        "Active"
    );

    kubectl(
        &testbed,
        &["create", "configmap", "c", "--from-literal=a=b"],
    );
    let config_map = get_json(&testbed, &["get", "configmap", "c"]);
    assert_eq!(config_map["data"], serde_json::json!({ "a": "b" }));

    kubectl(
        &testbed,
        &["create", "secret", "generic", "s", "--from-literal=p=q"],
    );
    let secret = get_json(&testbed, &["get", "secret", "s"]);
    assert_eq!(secret["data"], serde_json::json!({ "p": "cQ==" }));

    kubectl(
        &testbed,
        &[
            "create",
            "deployment",
            "d",
            "--image=skiff/busybox",
            "--replicas=2",
        ],
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
    assert_eq!(
        pod["spec"]["containers"][0]["args"],
        serde_json::json!(["sleep", "1"])
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(pod["metadata"]["labels"]["run"], "p");
    watch_in_protobuf(&kubeconfig);

    skiff_tests::eventually("the pod p to run", TIMEOUT, || {
        (get_json(&testbed, &["get", "pod", "p"])["status"]["phase"] == "Running").then_some(())
    });
}

/// A watch asked in protobuf, as client-go's informers (kube-proxy's) ask
/// it: length-prefixed `WatchEvent`s around enveloped objects.
fn watch_in_protobuf(kubeconfig: &Path) {
    let directory = tempfile::tempdir().unwrap();
    let directory = directory.path();
    let kubeconfig: Value = serde_json::from_slice(&std::fs::read(kubeconfig).unwrap())
        .expect("the kubeconfig is JSON");
    let pem = |section: &str, field: &str, file: &str| {
        let data = kubeconfig[section][0][section.trim_end_matches('s')][field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in the kubeconfig"));
        let path = directory.join(file);
        std::fs::write(
            &path,
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
        )
        .unwrap();
        path
    };
    let ca = pem("clusters", "certificate-authority-data", "ca.crt");
    let cert = pem("users", "client-certificate-data", "admin.crt");
    let key = pem("users", "client-key-data", "admin.key");
    let server = kubeconfig["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap();
    let curl = |path: &str| -> (String, Vec<u8>) {
        let headers = directory.join("headers");
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .arg("-D")
            .arg(&headers)
            .args(["-H", "Accept: application/vnd.kubernetes.protobuf, */*"])
            .arg(format!("{server}{path}"))
            .output()
            .expect("curl runs");
        assert!(output.status.success(), "curl {path}: {output:?}");
        (std::fs::read_to_string(&headers).unwrap(), output.stdout)
    };

    let (headers, body) = curl("/api/v1/namespaces/default/configmaps/c");
    assert!(
        headers.contains("application/vnd.kubernetes.protobuf"),
        "{headers}"
    );
    assert!(body.starts_with(b"k8s\0"), "{body:?}");

    let (headers, body) = curl("/api/v1/namespaces?watch=1&timeoutSeconds=1");
    assert!(
        headers.contains("application/vnd.kubernetes.protobuf;stream=watch"),
        "{headers}"
    );
    let mut rest = body.as_slice();
    let mut events = 0;
    while !rest.is_empty() {
        let length = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let event = &rest[4..4 + length];
        assert!(contains(event, b"ADDED"), "{event:?}");
        assert!(contains(event, b"k8s\0"), "{event:?}");
        events += 1;
        rest = &rest[4 + length..];
    }
    // default, kube-system, kube-public, kube-node-lease and x at least.
    assert!(events >= 5, "{events} events");
    // ObjectMeta.name (field 1, length 1): "x".
    assert!(contains(&body, b"\x0a\x01x"), "namespace x is among them");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
