//! ResourceQuota and LimitRange end to end with the real `kubectl`: a
//! quota on pods lets one in and refuses the next with kube-apiserver's
//! message until the first is deleted; a quota on requests.cpu refuses a
//! pod without requests until a LimitRange gives it default ones; a
//! LimitRange max refuses a pod over it. Refused pods are not stored.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::time::Duration;

use serde_json::Value;
use skiff_tests::{Testbed, output_with_input};

const TIMEOUT: Duration = Duration::from_secs(60);

/// `kubectl create -f -` of `manifest`, which must fail with exit code 1;
/// returns its stderr.
fn refused(testbed: &Testbed, manifest: &str) -> String {
    let output = output_with_input(
        testbed.kubectl().unwrap().args(["create", "-f", "-"]),
        manifest,
    )
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    String::from_utf8(output.stderr).unwrap()
}

fn pod(name: &str, resources: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: app
    image: skiff/busybox
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    resources: {resources}
"#
    )
}

fn pod_names(testbed: &Testbed) -> Vec<String> {
    testbed.kubectl_json(&["get", "pods"])["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pod| pod["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until the controller has counted `quota`'s usage and it shows
/// `used` for `resource`.
fn wait_used(testbed: &Testbed, quota: &str, resource: &str, used: &str) -> Value {
    skiff_tests::eventually(&format!("{quota} used {resource}={used}"), TIMEOUT, || {
        let quota = testbed.kubectl_json(&["get", "quota", quota]);
        (quota["status"]["used"][resource] == used).then_some(quota)
    })
}

#[test]
fn quotas_and_limit_ranges_admit_and_refuse_pods() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();

    let quota = "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q\nspec:\n  hard:\n    pods: \"1\"\n";
    testbed.kubectl_ok(&["create", "-f", "-"], quota);
    let counted = wait_used(&testbed, "q", "pods", "0");
    assert_eq!(counted["status"]["hard"]["pods"], "1");

    testbed.kubectl_ok(&["create", "-f", "-"], &pod("first", "{}"));
    let stderr = refused(&testbed, &pod("second", "{}"));
    assert!(
        stderr.contains(
            "pods \"second\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"
        ),
        "{stderr}"
    );
    assert_eq!(pod_names(&testbed), ["first"]);
    let described = testbed.kubectl_ok(&["describe", "quota", "q"], "");
    assert!(
        described
            .lines()
            .any(|line| line.split_whitespace().eq(["pods", "1", "1"])),
        "{described}"
    );

    // Deleting the first pod gives its room back.
    testbed.kubectl_ok(
        &["delete", "pod", "first", "--grace-period=0", "--force"],
        "",
    );
    wait_used(&testbed, "q", "pods", "0");
    testbed.kubectl_ok(&["create", "-f", "-"], &pod("third", "{}"));
    wait_used(&testbed, "q", "pods", "1");
    testbed.kubectl_ok(&["delete", "quota", "q"], "");

    // A quota on requests.cpu needs every container to ask for cpu.
    let compute = "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: compute\nspec:\n  hard:\n    requests.cpu: \"1\"\n";
    testbed.kubectl_ok(&["create", "-f", "-"], compute);
    wait_used(&testbed, "compute", "requests.cpu", "0");
    let stderr = refused(&testbed, &pod("bare", "{}"));
    assert!(
        stderr.contains(
            "pods \"bare\" is forbidden: failed quota: compute: must specify requests.cpu for: app"
        ),
        "{stderr}"
    );
    let limits = r#"
apiVersion: v1
kind: LimitRange
metadata:
  name: limits
spec:
  limits:
  - type: Container
    defaultRequest: { cpu: 100m }
    max: { memory: 1Gi }
"#;
    testbed.kubectl_ok(&["create", "-f", "-"], limits);
    testbed.kubectl_ok(&["create", "-f", "-"], &pod("bare", "{}"));
    let bare = testbed.kubectl_json(&["get", "pod", "bare"]);
    let resources = &bare["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "100m");
    assert_eq!(resources["limits"]["memory"], "1Gi", "default from max");
    assert_eq!(
        resources["requests"]["memory"], "1Gi",
        "default request from default"
    );
    assert_eq!(
        bare["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: memory limit for container app; cpu, memory request for container app"
    );
    wait_used(&testbed, "compute", "requests.cpu", "100m");

    // Over the LimitRange's max.
    let stderr = refused(
        &testbed,
        &pod(
            "big",
            "{ requests: { cpu: 100m }, limits: { memory: 2Gi } }",
        ),
    );
    assert!(
        stderr.contains(
            "pods \"big\" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi"
        ),
        "{stderr}"
    );
    let mut names = pod_names(&testbed);
    names.sort();
    assert_eq!(names, ["bare", "third"]);
}
