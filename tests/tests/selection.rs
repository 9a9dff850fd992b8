//! End to end: which backend a connection through a ClusterIP reaches —
//! endpoint conditions, internalTrafficPolicy and sessionAffinity — with
//! real agents, a real etcd and connects crossing the eBPF socket hooks.
mod common;

use std::{thread, time::Duration};

use common::{REACTION_BOUND, Web, answered, assert_fails_fast, names, vip};
use serde_json::json;
use skiff_tests::{EndpointSpec, FailureKind};

#[test]
fn terminating_endpoints_serve_only_while_no_endpoint_is_ready() {
    let web = Web::start();

    // Both pods are shutting down; only web-a still serves.
    web.set_endpoints(&[
        EndpointSpec::terminating(web.a.ip(), web.a.node(), true),
        EndpointSpec::terminating(web.b.ip(), web.b.node(), false),
    ]);
    thread::sleep(REACTION_BOUND);
    let results = web.call(&["tcp", "10.96.0.10:80", "--count", "30"]);
    assert_eq!(answered(&results, vip(80)), names(&["web-a"]));

    // A ready endpoint appears: the terminating one is no longer used.
    web.set_endpoints(&[
        EndpointSpec::terminating(web.a.ip(), web.a.node(), true),
        web.ready(&web.b),
    ]);
    thread::sleep(REACTION_BOUND);
    let results = web.call(&["tcp", "10.96.0.10:80", "--count", "30"]);
    assert_eq!(answered(&results, vip(80)), names(&["web-b"]));
}

#[test]
fn internal_traffic_policy_local_keeps_traffic_on_the_clients_node() {
    let mut web = Web::start();
    let client2 = web
        .testbed
        .add_pod(2, "client2")
        .expect("client pod on node2");
    web.put_service(|service| service["spec"]["internalTrafficPolicy"] = json!("Local"));
    thread::sleep(REACTION_BOUND);

    let from_node1 = web.call(&["tcp", "10.96.0.10:80", "--count", "30"]);
    assert_eq!(answered(&from_node1, vip(80)), names(&["web-a"]));
    let from_node2 = web.call_from(&client2, &["tcp", "10.96.0.10:80", "--count", "30"]);
    assert_eq!(answered(&from_node2, vip(80)), names(&["web-b"]));

    // node1 loses its only local endpoint: its clients are refused at once
    // rather than sent across to node2.
    web.set_endpoints(&[web.ready(&web.b)]);
    thread::sleep(REACTION_BOUND);
    let results = web.call(&[
        "tcp",
        "10.96.0.10:80",
        "--count",
        "5",
        "--timeout-ms",
        "3000",
    ]);
    assert_fails_fast(&results, &[FailureKind::Refused]);
    let from_node2 = web.call_from(&client2, &["tcp", "10.96.0.10:80", "--count", "10"]);
    assert_eq!(answered(&from_node2, vip(80)), names(&["web-b"]));
}

#[test]
fn client_ip_affinity_holds_for_its_timeout_and_ends_after_it() {
    let web = Web::start();
    let timeout = Duration::from_secs(1);
    web.put_service(|service| {
        service["spec"]["sessionAffinity"] = json!("ClientIP");
        service["spec"]["sessionAffinityConfig"] =
            json!({ "clientIP": { "timeoutSeconds": timeout.as_secs() } });
    });
    thread::sleep(REACTION_BOUND);

    // Well within the timeout, every connection sticks to one backend (by
    // chance alone, 30 random picks of two would agree once in 2^29).
    let results = web.call(&[
        "tcp",
        "10.96.0.10:80",
        "--count",
        "30",
        "--interval-ms",
        "10",
    ]);
    let sticky = answered(&results, vip(80));
    assert_eq!(sticky.len(), 1, "{sticky:?}");

    // Once a client has been idle past the timeout, its next connection is
    // balanced afresh: over enough idle periods both backends show up (the
    // chance that 20 fresh picks all agree is 2^-19).
    let mut seen = sticky;
    for _ in 0..20 {
        thread::sleep(timeout + Duration::from_millis(300));
        seen.extend(answered(&web.call(&["tcp", "10.96.0.10:80"]), vip(80)));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen, names(&["web-a", "web-b"]));
}
