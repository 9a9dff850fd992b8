//! End to end: what the agent reports — /metrics counters that follow real
//! connections through the eBPF hooks, /healthz, and `skiff-agent status`.
mod common;

use std::{process::Command, thread};

use common::{REACTION_BOUND, Web};
use skiff_tests::{Testbed, agent_binary};

const HTTP_FRONTEND: &str =
    "namespace=\"default\",service=\"web\",port_name=\"http\",frontend=\"10.96.0.10:80/TCP\"";

/// GET `path` from node `node`'s agent, in the node's netns.
fn agent_http(testbed: &Testbed, node: usize, path: &str) -> (u16, String) {
    let output = testbed
        .cluster()
        .node(node)
        .command("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .arg(format!("http://127.0.0.1:10249{path}"))
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "curl failed: {output:?}");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let (body, code) = text
        .rsplit_once('\n')
        .expect("curl printed the status code");
    (code.parse().expect("a status code"), body.to_owned())
}

/// The value of the sample `series` (name and labels) in a scrape.
fn sample(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
}

fn scrape(web: &Web) -> String {
    let (code, body) = agent_http(&web.testbed, 1, "/metrics");
    assert_eq!(code, 200, "{body}");
    body
}

#[test]
fn metrics_count_connections_refusals_and_drops_as_they_happen() {
    let web = Web::start();
    let connections = format!("skiff_frontend_connections_total{{{HTTP_FRONTEND}}}");
    let refused = format!("skiff_frontend_refused_total{{{HTTP_FRONTEND}}}");
    let no_endpoints = "skiff_drops_total{reason=\"no_endpoints\"}";
    let unknown = "skiff_drops_total{reason=\"unknown_service\"}";

    let before = scrape(&web);
    web.call(&["tcp", "10.96.0.10:80", "--count", "10"]);
    let after = scrape(&web);
    assert_eq!(
        sample(&after, &connections) - sample(&before, &connections),
        10
    );
    assert!(
        after.contains(&format!("skiff_frontend_backends{{{HTTP_FRONTEND}}} 2")),
        "{after}"
    );

    web.set_endpoints(&[]);
    thread::sleep(REACTION_BOUND);
    web.call(&["tcp", "10.96.0.10:80", "--count", "5"]);
    web.call(&["tcp", "10.96.0.99:80", "--count", "3"]);
    let refusing = scrape(&web);
    assert_eq!(sample(&refusing, &refused) - sample(&after, &refused), 5);
    assert_eq!(
        sample(&refusing, no_endpoints) - sample(&after, no_endpoints),
        5
    );
    assert_eq!(sample(&refusing, unknown) - sample(&after, unknown), 3);
    assert!(
        sample(&refusing, "skiff_change_to_datapath_seconds_count") >= 1,
        "{refusing}"
    );
}

#[test]
fn healthz_is_ok_once_synced() {
    let web = Web::start();
    let (code, body) = agent_http(&web.testbed, 1, "/healthz");
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["frontends"], 3);
    assert_eq!(agent_http(&web.testbed, 1, "/nope").0, 404);
}

#[test]
fn status_prints_the_pinned_frontends_backends_and_counters() {
    let web = Web::start();
    web.call(&["tcp", "10.96.0.10:81", "--count", "4"]);
    let output = Command::new(agent_binary().expect("skiff-agent is built"))
        .arg("status")
        .arg("--bpffs")
        .arg(web.testbed.cluster().bpffs_dir(1))
        .output()
        .expect("skiff-agent status runs");
    assert!(output.status.success(), "{output:?}");
    let report = String::from_utf8(output.stdout).expect("UTF-8");
    let admin = report
        .lines()
        .find(|line| line.starts_with("10.96.0.10:81/TCP"))
        .unwrap_or_else(|| panic!("no admin frontend in:\n{report}"));
    // FRONTEND ID KIND BACKENDS AFFINITY CONNECTIONS UDP-SENDS REFUSED PACKETS
    let columns: Vec<&str> = admin.split_whitespace().collect();
    assert_eq!(columns[2], "cluster", "{report}");
    assert_eq!(columns[3], "2", "{report}");
    assert_eq!(columns[5], "4", "{report}");
    for backend in [&web.a, &web.b] {
        let line = format!("  -> {}:9090", backend.ip());
        assert!(report.contains(&line), "{line} missing in:\n{report}");
    }
    assert!(report.contains("10.96.0.10:53/UDP"), "{report}");
}
