//! End to end: the agents' two sources and kube-proxy's health port. A
//! `--source kube-api` agent (as `system:kube-proxy`, through skiff-control)
//! converges after the API server was down while a Service went away; and
//! `/healthz` on 10256 answers 503 while the agent's Node is tainted
//! `ToBeDeletedByClusterAutoscaler` (KEP-3836), whichever source the agent
//! reads, while `/livez` stays 200.
//!
//! Runs as root; clusters are serialised by the harness's lock.
mod common;

use std::{
    thread,
    time::{Duration, Instant},
};

use common::{Web, answered, names, vip};
use serde_json::Value;
use skiff_tests::{AgentSource, Testbed};

/// How long a change may take to show through the API server and back.
const CONVERGENCE: Duration = Duration::from_secs(20);

const TAINT: &str = "ToBeDeletedByClusterAutoscaler";

#[test]
fn a_kube_api_agent_converges_after_the_api_server_restarts_with_a_service_deleted_meanwhile() {
    let mut web = Web::start_on(AgentSource::KubeApi);
    let results = web.call(&["tcp", "10.96.0.10:80", "--count", "20"]);
    assert_eq!(answered(&results, vip(80)), names(&["web-a", "web-b"]));

    web.testbed.stop_control();
    web.delete_all();
    web.testbed
        .start_control(&["--controllers=false"])
        .expect("skiff-control starts again");

    let deadline = Instant::now() + CONVERGENCE;
    while web.call(&["tcp", "10.96.0.10:80"])[0].is_ok() {
        assert!(
            Instant::now() < deadline,
            "the deleted Service still answers after the API server came back"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn healthz_is_503_while_the_node_is_tainted_for_deletion_with_the_kube_api_source() {
    healthz_follows_the_nodes_taint(AgentSource::KubeApi);
}

#[test]
fn healthz_is_503_while_the_node_is_tainted_for_deletion_with_the_etcd_source() {
    healthz_follows_the_nodes_taint(AgentSource::Etcd);
}

fn healthz_follows_the_nodes_taint(source: AgentSource) {
    let mut testbed = Testbed::start_sourced(1, source).expect("the testbed starts");
    if source == AgentSource::Etcd {
        testbed
            .start_control(&["--controllers=false"])
            .expect("skiff-control starts");
    }
    let node = testbed.cluster().node(1).name().to_owned();
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": node },
    });
    testbed.kubectl_ok(&["create", "-f", "-"], &manifest.to_string());

    let (status, body) = wait_for_health(&testbed, "/healthz", 200);
    assert_eq!(body["nodeEligible"], true, "{body}");
    for field in ["lastUpdated", "currentTime"] {
        assert!(
            body[field]
                .as_str()
                .is_some_and(|time| time.ends_with(" +0000 UTC")),
            "{body}"
        );
    }
    assert_eq!(status, 200);

    testbed.kubectl_ok(
        &[
            "taint",
            "node",
            &node,
            &format!("{TAINT}=1700000000:NoSchedule"),
        ],
        "",
    );
    let (_, body) = wait_for_health(&testbed, "/healthz", 503);
    assert_eq!(body["nodeEligible"], false, "{body}");
    let (status, body) = health(&testbed, "/livez");
    assert_eq!(
        status, 200,
        "/livez leaves the node's eligibility out: {body}"
    );
    assert!(body.get("nodeEligible").is_none(), "{body}");

    testbed.kubectl_ok(&["taint", "node", &node, &format!("{TAINT}-")], "");
    let (_, body) = wait_for_health(&testbed, "/healthz", 200);
    assert_eq!(body["nodeEligible"], true, "{body}");
}

/// GET `path` on node 1's health port, from inside the node: the status
/// and the JSON body.
fn health(testbed: &Testbed, path: &str) -> (u16, Value) {
    let output = testbed
        .cluster()
        .node(1)
        .command("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:10256{path}"),
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let status = status.trim().parse().unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Polls `path` until it answers `status`; panics with the last answer
/// after [`CONVERGENCE`].
fn wait_for_health(testbed: &Testbed, path: &str, status: u16) -> (u16, Value) {
    let deadline = Instant::now() + CONVERGENCE;
    loop {
        let answer = health(testbed, path);
        if answer.0 == status {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}; last: {answer:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}
