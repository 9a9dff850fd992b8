//! End to end: passive health (`skiff.io/outlier-detection`). Backends
//! whose connects keep failing, as the `sock_ops` program on the client's
//! node sees them, leave the ClusterIP's choices on that node, come back
//! after their ejection time, and a frontend never ejects its last
//! backends. Real agents, a real etcd, connects from a pod through the
//! socket hooks.
mod common;

use std::{
    collections::{BTreeSet, HashSet},
    thread,
    time::{Duration, Instant},
};

use common::{Web, metric, names};
use serde_json::json;
use skiff_tests::{CallResult, EndpointSpec, FailureKind, Pod, Testbed};

/// How long a condition these tests wait for may take: failures are
/// driven by calls made meanwhile, so this bounds many connects.
const CONDITION_BOUND: Duration = Duration::from_secs(60);

const EJECTIONS_GAUGE: &str = "skiff_backends_ejected{namespace=\"default\",service=\"web\"}";
const HTTP_BACKENDS: &str = "skiff_frontend_backends{namespace=\"default\",service=\"web\",port_name=\"http\",frontend=\"10.96.0.10:80/TCP\"}";

fn ejections_of(pod: &Pod) -> String {
    format!(
        "skiff_backend_ejections_total{{namespace=\"default\",service=\"web\",backend=\"{}:8080\"}}",
        pod.ip()
    )
}

/// Turns outlier detection on for `default/web` with `settings`.
fn annotate(web: &Web, settings: serde_json::Value) {
    web.put_service(|service| {
        service["metadata"]["annotations"] =
            json!({ "skiff.io/outlier-detection": settings.to_string() });
    });
}

/// Calls the ClusterIP from the client (node1) until `done` holds of
/// node1's metrics, and returns every attempt made meanwhile.
fn call_until(
    web: &Web,
    timeout_ms: &str,
    what: &str,
    done: impl Fn(&Web) -> bool,
) -> Vec<CallResult> {
    let deadline = Instant::now() + CONDITION_BOUND;
    let mut attempts = Vec::new();
    while !done(web) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        attempts.extend(web.call(&[
            "tcp",
            "10.96.0.10:80",
            "--count",
            "3",
            "--timeout-ms",
            timeout_ms,
        ]));
    }
    attempts
}

/// The backends that answered, and the kinds of the failed attempts.
fn outcomes(attempts: &[CallResult]) -> (BTreeSet<String>, HashSet<FailureKind>) {
    let mut answered = BTreeSet::new();
    let mut failed = HashSet::new();
    for attempt in attempts {
        match attempt {
            CallResult::Ok { backend, .. } => {
                answered.insert(backend.clone());
            }
            CallResult::Failed { kind, .. } => {
                failed.insert(*kind);
            }
        }
    }
    (answered, failed)
}

fn ejected_now(web: &Web) -> Option<u64> {
    metric(web, 1, EJECTIONS_GAUGE)
}

#[test]
fn a_backend_that_resets_is_ejected_and_returns_after_its_ejection_time() {
    let mut web = Web::start();
    // Nothing listens on 8080 in this pod: every SYN gets a reset.
    let closed = web.testbed.add_pod(2, "closed").expect("closed pod");
    annotate(
        &web,
        json!({"consecutiveFailures": 3, "baseEjectionSeconds": 4, "maxEjectionPercent": 50}),
    );
    web.set_endpoints(&[
        web.ready(&web.a),
        web.ready(&web.b),
        EndpointSpec::ready(closed.ip(), closed.node()),
    ]);

    let before = call_until(&web, "1000", "the closed backend's ejection", |web| {
        metric(web, 1, &ejections_of(&closed)) == Some(1)
    });
    let (_, failed) = outcomes(&before);
    assert_eq!(failed, HashSet::from([FailureKind::Refused]));
    assert_eq!(ejected_now(&web), Some(1));
    assert_eq!(metric(&web, 1, HTTP_BACKENDS), Some(2));

    // Ejected: new connects go to the two live backends only.
    let during = web.call(&["tcp", "10.96.0.10:80", "--count", "20"]);
    let (answered, failed) = outcomes(&during);
    assert!(failed.is_empty(), "{during:?}");
    assert_eq!(answered, names(&["web-a", "web-b"]));

    // After its ejection time it is chosen again (and refuses again).
    let deadline = Instant::now() + CONDITION_BOUND;
    while ejected_now(&web) != Some(0) {
        assert!(
            Instant::now() < deadline,
            "the closed backend never returned"
        );
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(metric(&web, 1, HTTP_BACKENDS), Some(3));
    let after = web.call(&["tcp", "10.96.0.10:80", "--count", "30"]);
    let (_, failed) = outcomes(&after);
    assert!(failed.contains(&FailureKind::Refused), "{after:?}");
    assert!(
        web.testbed.agent_log(1).contains("ejected backend returns"),
        "no return logged"
    );
}

#[test]
fn a_backend_that_never_answers_is_ejected() {
    let mut web = Web::start();
    // It listens, but its answers to the client are dropped: the client's
    // SYNs go unanswered.
    let mute = web
        .testbed
        .serve(2, "mute", &[8080], &[])
        .expect("mute pod serves");
    let blackhole = mute
        .command("ip")
        .args([
            "route",
            "add",
            "blackhole",
            &format!("{}/32", web.client.ip()),
        ])
        .status()
        .expect("ip runs");
    assert!(blackhole.success(), "the blackhole route was refused");
    annotate(
        &web,
        json!({"consecutiveFailures": 2, "baseEjectionSeconds": 60, "maxEjectionPercent": 50}),
    );
    web.set_endpoints(&[
        web.ready(&web.a),
        web.ready(&web.b),
        EndpointSpec::ready(mute.ip(), mute.node()),
    ]);

    let before = call_until(&web, "1500", "the mute backend's ejection", |web| {
        metric(web, 1, &ejections_of(&mute)) == Some(1)
    });
    let (_, failed) = outcomes(&before);
    assert_eq!(failed, HashSet::from([FailureKind::Timeout]));
    let during = web.call(&["tcp", "10.96.0.10:80", "--count", "20"]);
    let (answered, failed) = outcomes(&during);
    assert!(failed.is_empty(), "{during:?}");
    assert_eq!(answered, names(&["web-a", "web-b"]));
}

#[test]
fn the_last_backends_are_never_ejected() {
    let mut web = Web::start();
    let dead1 = web.testbed.add_pod(1, "dead1").expect("dead1 pod");
    let dead2 = web.testbed.add_pod(2, "dead2").expect("dead2 pod");
    annotate(
        &web,
        json!({"consecutiveFailures": 2, "baseEjectionSeconds": 60, "maxEjectionPercent": 100}),
    );
    web.set_endpoints(&[
        EndpointSpec::ready(dead1.ip(), dead1.node()),
        EndpointSpec::ready(dead2.ip(), dead2.node()),
    ]);

    call_until(&web, "1000", "one ejection", |web| {
        ejected_now(web) == Some(1)
    });
    // Both keep failing; the one left stays, however often it fails.
    let attempts = web.call(&["tcp", "10.96.0.10:80", "--count", "30"]);
    let (answered, failed) = outcomes(&attempts);
    assert!(answered.is_empty(), "{attempts:?}");
    assert_eq!(failed, HashSet::from([FailureKind::Refused]));
    assert_eq!(ejected_now(&web), Some(1));
    assert_eq!(metric(&web, 1, HTTP_BACKENDS), Some(1));
    let total: u64 = [&dead1, &dead2]
        .iter()
        .filter_map(|pod| metric(&web, 1, &ejections_of(pod)))
        .sum();
    assert_eq!(total, 1);
}

#[test]
fn an_annotation_the_agents_cannot_read_is_refused_naming_it() {
    let mut testbed = Testbed::start(1).expect("the testbed starts");
    testbed
        .start_control(&["--leader-elect=false"])
        .expect("skiff-control starts");
    let service = |value: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    skiff.io/outlier-detection: '{value}'\nspec:\n  ports:\n  - port: 80\n"
        )
    };
    let refused = testbed
        .run_kubectl(
            &["create", "-f", "-"],
            &service(r#"{"maxEjectionPercent":150}"#),
        )
        .expect_err("an out-of-range share is refused");
    let refused = format!("{refused:#}");
    assert!(
        refused.contains("metadata.annotations[skiff.io/outlier-detection]: Invalid value")
            && refused.contains("maxEjectionPercent must be between 0 and 100"),
        "{refused}"
    );
    testbed
        .run_kubectl(&["create", "-f", "-"], &service("true"))
        .expect("a readable annotation is accepted");
}
