//! The resource metrics API end to end with the real `kubectl top`:
//! skiff-control serves `metrics.k8s.io` from the agents' `/stats/summary`,
//! which they read from the pods' cgroups. A busy pod shows CPU and memory;
//! every node is listed.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::time::Duration;

use serde_json::Value;
use skiff_tests::Testbed;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Keeps about 4 MB in the shell's memory and a core busy.
const BURNER: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: burner
  labels:
    app: burner
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: skiff/busybox
    imagePullPolicy: Never
    command: ["sh", "-c", "x=$(head -c 4000000 /dev/zero | tr '\\0' a); while true; do :; done"]
"#;

/// The rows of `kubectl top` output below its header, split in columns.
fn rows(output: &str) -> Vec<Vec<String>> {
    output
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// A quantity as kubectl top prints it (`250m`, `12Mi`), in its unit.
fn amount(text: &str, unit: &str) -> u64 {
    text.strip_suffix(unit)
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("{text} is not in {unit}"))
}

#[test]
fn kubectl_top_shows_pods_and_nodes() {
    let mut testbed = Testbed::start_running_pods(2).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();
    testbed.kubectl_ok(&["apply", "-f", "-"], BURNER);

    let (cpu, memory) = skiff_tests::eventually("burner in kubectl top pods", TIMEOUT, || {
        let output = testbed.run_kubectl(&["top", "pods"], "").ok()?;
        let row = rows(&output)
            .into_iter()
            .find(|row| row.first().is_some_and(|name| name == "burner"))?;
        Some((amount(&row[1], "m"), amount(&row[2], "Mi")))
    });
    assert!(cpu > 0, "CPU {cpu}m");
    assert!(memory > 0, "memory {memory}Mi");

    let raw = testbed.kubectl_ok(
        &[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dburner",
        ],
        "",
    );
    let list: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(list["kind"], "PodMetricsList");
    assert_eq!(list["items"][0]["containers"][0]["name"], "spin");

    let nodes: Vec<String> = testbed
        .cluster()
        .nodes()
        .iter()
        .map(|node| node.name().to_owned())
        .collect();
    let listed = skiff_tests::eventually("every node in kubectl top nodes", TIMEOUT, || {
        let output = testbed.run_kubectl(&["top", "nodes"], "").ok()?;
        let rows = rows(&output);
        let measured = |node: &String| {
            rows.iter().any(|row| {
                row.first() == Some(node)
                    && row.get(1).is_some_and(|cpu| cpu.ends_with('m'))
                    && row.get(3).is_some_and(|memory| memory.ends_with("Mi"))
            })
        };
        nodes.iter().all(measured).then_some(rows)
    });
    for row in listed {
        assert!(amount(&row[1], "m") > 0, "{row:?}");
        assert!(amount(&row[3], "Mi") > 0, "{row:?}");
    }

    let missing = testbed
        .run_kubectl(
            &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nowhere"],
            "",
        )
        .expect_err("no metrics for a node that does not exist");
    assert!(format!("{missing:#}").contains("NotFound"), "{missing:#}");
}
