//! End to end: the agents' Ingress proxy, reached from outside the
//! cluster (`skiff-ext`) on a node's address with curl: host and path
//! routing (exact, wildcard, Exact and Prefix paths, a named Service
//! port), 404 for an unknown host, 503 naming the Ingress and Service for
//! a missing Service, TLS chosen by SNI with HTTP/2 by ALPN and reloaded
//! when its Secret changes, a Secret
//! without `tls.crt` that leaves its host served over HTTP, and the
//! forwarding headers' absence of a client-made `X-Forwarded-Proto`.
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use common::{Web, names};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(15);

fn ingress(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "namespace": "default", "name": name, "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-01-01T00:00:00Z" },
        "spec": spec,
    })
}

fn path(kind: &str, path: &str, service: &str, port: Value) -> Value {
    json!({ "path": path, "pathType": kind,
        "backend": { "service": { "name": service, "port": port } } })
}

fn tls_secret(name: &str, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": { "namespace": "default", "name": name },
        "data": data,
    })
}

/// curl from the outside client: (status, body, HTTP version).
fn curl(web: &Web, args: &[&str]) -> (u16, String, String) {
    let output = web
        .testbed
        .cluster()
        .ext()
        .command("curl")
        .args(["-s", "-m", "3", "-w", "\n%{http_code} %{http_version}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    let (code, version) = status.split_once(' ').expect("code and version");
    (
        code.parse().unwrap_or(0),
        body.to_owned(),
        version.to_owned(),
    )
}

/// Every body `count` GETs of `url` with `Host: host` got, once all are 200.
fn answered(web: &Web, host: &str, url: &str, count: usize) -> Option<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..count {
        let (code, body, _) = curl(web, &["-H", &format!("Host: {host}"), url]);
        if code != 200 {
            return None;
        }
        seen.insert(body.trim().to_owned());
    }
    Some(seen)
}

#[test]
fn ingress_routes_by_host_and_path_with_tls_by_sni() {
    let mut web = Web::start();
    // The agents read TLS Secrets through the API server.
    web.testbed.start_control(&[]).unwrap();
    let store = web.testbed.store();
    let node = web.testbed.cluster().node(1).ip();
    let http = format!("http://{node}");

    let cert = rcgen::generate_simple_self_signed(vec!["a.example.com".to_owned()]).unwrap();
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    store
        .put(
            "/registry/secrets/default/a-tls",
            &tls_secret(
                "a-tls",
                json!({ "tls.crt": b64(&cert.cert.pem()), "tls.key": b64(&cert.signing_key.serialize_pem()) }),
            ),
        )
        .unwrap();
    store
        .put(
            "/registry/secrets/default/no-crt",
            &tls_secret("no-crt", json!({ "tls.key": b64("key") })),
        )
        .unwrap();
    store
        .put(
            "/registry/ingress/default/web",
            &ingress(
                "web",
                json!({
                    "tls": [{ "hosts": ["a.example.com"], "secretName": "a-tls" },
                            { "hosts": ["plain.example.com"], "secretName": "no-crt" }],
                    "rules": [
                        { "host": "a.example.com", "http": { "paths": [
                            path("Prefix", "/", "web", json!({ "number": 80 })),
                            path("Exact", "/admin", "web", json!({ "name": "admin" })),
                        ] } },
                        { "host": "*.wild.example.com", "http": { "paths": [
                            path("ImplementationSpecific", "/", "web", json!({ "name": "admin" })),
                        ] } },
                        { "host": "plain.example.com", "http": { "paths": [
                            path("Prefix", "/", "web", json!({ "number": 80 })),
                        ] } },
                        { "host": "missing.example.com", "http": { "paths": [
                            path("Prefix", "/", "missing", json!({ "number": 80 })),
                        ] } },
                    ],
                }),
            ),
        )
        .unwrap();

    let both = names(&["web-a", "web-b"]);
    let admins = names(&["web-a-admin", "web-b-admin"]);
    skiff_tests::eventually("a.example.com served by both backends", TIMEOUT, || {
        answered(&web, "a.example.com", &format!("{http}/index"), 10).filter(|seen| *seen == both)
    });
    // Exact /admin goes to the named port; /admin/x is the Prefix /'s.
    assert_eq!(
        answered(&web, "a.example.com", &format!("{http}/admin"), 6),
        Some(admins.clone())
    );
    assert_eq!(
        answered(&web, "a.example.com", &format!("{http}/admin/x"), 6),
        Some(both.clone())
    );
    // A wildcard matches one label, not two nor none.
    assert_eq!(
        answered(&web, "x.wild.example.com", &format!("{http}/"), 6),
        Some(admins)
    );
    for host in [
        "a.b.wild.example.com",
        "wild.example.com",
        "unknown.example.com",
    ] {
        let (code, body, _) = curl(&web, &["-H", &format!("Host: {host}"), &format!("{http}/")]);
        assert_eq!(code, 404, "{host}: {body}");
    }
    // A missing Service: 503 naming the Ingress and the Service.
    let (code, body, _) = curl(
        &web,
        &["-H", "Host: missing.example.com", &format!("{http}/")],
    );
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("default/web") && body.contains("default/missing"),
        "{body}"
    );
    // A TLS Secret without tls.crt: its host is still served over HTTP.
    assert_eq!(
        answered(&web, "plain.example.com", &format!("{http}/"), 4).map(|s| s.is_subset(&both)),
        Some(true)
    );

    // HTTPS: the Secret's certificate by SNI (curl checks it against the
    // certificate itself), once the agent has read the Secret through the
    // API server; HTTP/2 by ALPN.
    let ca =
        std::env::temp_dir().join(format!("{}-a.pem", web.testbed.cluster().prefix().as_str()));
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let resolve = format!("a.example.com:443:{node}");
    let https = [
        "--http2",
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
        "https://a.example.com/x",
    ];
    let (code, body, version) =
        skiff_tests::eventually("the Secret's certificate served", TIMEOUT, || {
            let answer = curl(&web, &https);
            (answer.0 == 200).then_some(answer)
        });
    assert_eq!((code, version.as_str()), (200, "2"), "{body}");
    assert!(both.contains(body.trim()), "{body}");
    // Another name gets the default certificate, which curl refuses.
    let resolve = format!("plain.example.com:443:{node}");
    let (code, _, _) = curl(
        &web,
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            "https://plain.example.com/",
        ],
    );
    assert_eq!(code, 0, "the default certificate is not a.example.com's");

    // A new certificate in the Secret is served without a restart: curl
    // trusting only the new one succeeds once the agent has reloaded.
    let renewed = rcgen::generate_simple_self_signed(vec!["a.example.com".to_owned()]).unwrap();
    store
        .put(
            "/registry/secrets/default/a-tls",
            &tls_secret(
                "a-tls",
                json!({ "tls.crt": b64(&renewed.cert.pem()), "tls.key": b64(&renewed.signing_key.serialize_pem()) }),
            ),
        )
        .unwrap();
    std::fs::write(&ca, renewed.cert.pem()).unwrap();
    let resolve = format!("a.example.com:443:{node}");
    let https = [
        "--cacert",
        ca.to_str().unwrap(),
        "--resolve",
        &resolve,
        "https://a.example.com/x",
    ];
    skiff_tests::eventually("the renewed certificate served", TIMEOUT, || {
        let (code, body, _) = curl(&web, &https);
        (code == 200 && both.contains(body.trim())).then_some(())
    });
    let _ = std::fs::remove_file(&ca);

    // The agent says what it serves.
    let log = web.testbed.agent_log(1);
    assert!(log.contains("Ingress routes loaded"), "{log}");
    assert!(
        log.contains("TLS Secret has no tls.crt") && log.contains("default/no-crt"),
        "{log}"
    );
}

#[test]
fn a_dead_endpoint_costs_no_request_and_is_ejected() {
    let web = Web::start();
    // The client pod listens on nothing: connects to it are refused, as
    // to a backend pod that stopped before the slices said so.
    web.set_endpoints(&[web.ready(&web.a), web.ready(&web.b), web.ready(&web.client)]);
    web.testbed
        .store()
        .put(
            "/registry/ingress/default/web",
            &ingress(
                "web",
                json!({ "defaultBackend": { "service": { "name": "web", "port": { "number": 80 } } } }),
            ),
        )
        .unwrap();
    let url = format!("http://{}/", web.testbed.cluster().node(2).ip());
    skiff_tests::eventually("the default backend to answer", TIMEOUT, || {
        answered(&web, "any.example.com", &url, 1)
    });
    let seen = answered(&web, "any.example.com", &url, 40).expect("every request answered");
    assert_eq!(seen, names(&["web-a", "web-b"]));
    let log = web.testbed.agent_log(2);
    assert!(
        log.contains("endpoint ejected after consecutive failures"),
        "{log}"
    );
}

#[test]
fn websocket_is_relayed_both_ways() {
    let web = Web::start();
    let echo = skiff_tests::echo_binary().unwrap();
    let _server = skiff_tests::ProcessGuard::spawn_ready(
        web.a
            .command(&echo)
            .args(["serve", "--name", "ws-a", "--websocket", "9000"]),
        "ready",
        TIMEOUT,
    )
    .expect("the WebSocket server starts");
    let ports = [skiff_tests::PortSpec {
        name: "ws",
        protocol: "TCP",
        port: 80,
        target_port: 9000,
    }];
    let store = web.testbed.store();
    store
        .put(
            &skiff_tests::service_key("default", "ws"),
            &skiff_tests::service("default", "ws", "10.96.0.20".parse().unwrap(), &ports),
        )
        .unwrap();
    store
        .put(
            &skiff_tests::endpoint_slice_key("default", "ws-1"),
            &skiff_tests::endpoint_slice("default", "ws-1", "ws", &ports, &[web.ready(&web.a)]),
        )
        .unwrap();
    store
        .put(
            "/registry/ingress/default/ws",
            &ingress(
                "ws",
                json!({ "rules": [{ "host": "ws.example.com", "http": { "paths": [
                    path("Prefix", "/ws", "ws", json!({ "name": "ws" })),
                ] } }] }),
            ),
        )
        .unwrap();
    let target = format!("{}:80", web.testbed.cluster().node(1).ip());
    let replies = skiff_tests::eventually("the WebSocket to answer", TIMEOUT, || {
        let output = web
            .testbed
            .cluster()
            .ext()
            .command(&echo)
            .args(["websocket", &target, "--host", "ws.example.com"])
            .args(["--message", "one", "--message", "two"])
            .output()
            .expect("skiff-echo runs");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    });
    assert_eq!(replies, "ws-a: one\nws-a: two\n");
}

/// Runs batches of GETs of `url` with `Host: host` from the outside
/// client until `stop`; every status code (0: no answer).
fn client_loop(
    ext: skiff_tests::Host,
    host: &str,
    url: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<u16>> {
    let (host, url) = (format!("Host: {host}"), format!("{url}/[1-50]"));
    std::thread::spawn(move || {
        let mut codes = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let output = ext
                .command("curl")
                .args(["-s", "-m", "5", "-H", &host, "-w", "\n%{http_code}\n", &url])
                .output()
                .expect("curl runs");
            codes.extend(
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .filter(|line| line.len() == 3)
                    .filter_map(|line| line.parse::<u16>().ok()),
            );
        }
        codes
    })
}

#[test]
fn a_rolling_update_behind_an_ingress_fails_no_request() {
    let mut testbed = skiff_tests::Testbed::start_running_pods(2).unwrap();
    testbed.start_control(&["--leader-elect=false"]).unwrap();
    let manifests = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/echo.yaml"
    ))
    .unwrap();
    // The Deployment and Service only: the client pod is not needed.
    let manifests: Vec<&str> = manifests.split("\n---\n").take(2).collect();
    testbed.kubectl_ok(&["apply", "-f", "-"], &manifests.join("\n---\n"));
    let ingress = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/ingress.yaml"
    ))
    .unwrap();
    testbed.kubectl_ok(&["apply", "-f", "-"], &ingress);
    let url = format!("http://{}", testbed.cluster().node(1).ip());
    let ext = testbed.cluster().ext().clone();
    skiff_tests::eventually(
        "the echo Ingress to answer",
        Duration::from_secs(60),
        || {
            let output = ext
                .command("curl")
                .args(["-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}"])
                .args(["-H", "Host: echo.example.com", &url])
                .output()
                .unwrap();
            (output.stdout == b"200").then_some(())
        },
    );

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = client_loop(ext, "echo.example.com", &url, stop.clone());
    testbed.kubectl_ok(&["rollout", "restart", "deployment/echo"], "");
    testbed.kubectl_ok(
        &["rollout", "status", "deployment/echo", "--timeout=90s"],
        "",
    );
    // Until the old pods are gone, not only replaced.
    skiff_tests::eventually("the old pods to go", Duration::from_secs(60), || {
        let pods = testbed.kubectl_json(&["get", "pods", "-l", "app=echo"]);
        (pods["items"].as_array().map(Vec::len) == Some(2)).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let codes = client.join().unwrap();
    let failed = codes.iter().filter(|code| **code != 200).count();
    assert!(codes.len() > 100, "only {} requests", codes.len());
    assert_eq!(failed, 0, "{failed} of {} requests failed", codes.len());
}
