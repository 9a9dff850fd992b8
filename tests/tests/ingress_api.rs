//! End to end: Ingress through skiff-control with the real kubectl (422s
//! naming the field, the default IngressClass `skiff`, ADDRESS from the
//! load balancer pool, the Warning Events) and traffic from the outside
//! client to the load balancer IP of `kube-system/skiff-ingress`, which the
//! nodes' per-packet programs send to an agent's Ingress proxy on a Ready
//! node's port 80.

use std::{
    thread,
    time::{Duration, Instant},
};

use skiff_tests::Testbed;

const LB_POOL: &str = "172.18.255.0/28";
const WAIT: Duration = Duration::from_secs(30);

/// Polls `check` until it gives a value; panics after [`WAIT`].
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn ingress(name: &str, path_type: &str, host: &str, tls: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\nspec:\n  rules:\n  - host: '{host}'\n    http:\n      paths:\n      - path: /\n        pathType: {path_type}\n        backend:\n          service:\n            name: missing\n            port:\n              number: 80\n{tls}"
    )
}

#[test]
fn ingress_is_validated_addressed_reported_and_reached_from_outside() {
    let mut testbed = Testbed::start_running_pods(2).unwrap();
    let pool = format!("--load-balancer-pool={LB_POOL}");
    testbed
        .start_control(&["--leader-elect=false", &pool])
        .unwrap();

    let refused = testbed
        .run_kubectl(
            &["create", "-f", "-"],
            &ingress("bad", "Regex", "a.example.com", ""),
        )
        .expect_err("an unknown pathType is refused");
    assert!(
        format!("{refused:#}")
            .contains("spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\""),
        "{refused:#}"
    );
    let refused = testbed
        .run_kubectl(
            &["create", "-f", "-"],
            &ingress("bad", "Prefix", "Bad_Host", ""),
        )
        .expect_err("a bad host is refused");
    assert!(
        format!("{refused:#}").contains("spec.rules[0].host: Invalid value: \"Bad_Host\""),
        "{refused:#}"
    );

    let class = testbed.kubectl_json(&["get", "ingressclass", "skiff"]);
    assert_eq!(class["spec"]["controller"], "skiff.io/ingress-controller");
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );

    testbed.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "half-tls",
            "--from-literal=tls.crt=cert",
        ],
        "",
    );
    let tls = "  tls:\n  - hosts: [web.example.com]\n    secretName: half-tls\n";
    testbed.kubectl_ok(
        &["create", "-f", "-"],
        &ingress("web", "Prefix", "web.example.com", tls),
    );
    let web = testbed.kubectl_json(&["get", "ingress", "web"]);
    assert_eq!(web["spec"]["ingressClassName"], "skiff");

    let service = wait_for("skiff-ingress's load balancer IP", || {
        let service =
            testbed.kubectl_json(&["get", "service", "-n", "kube-system", "skiff-ingress"]);
        service["status"]["loadBalancer"]["ingress"][0]["ip"]
            .is_string()
            .then_some(service)
    });
    let lb_ip = service["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = wait_for("the Ingress's ADDRESS", || {
        let table = testbed.kubectl_ok(&["get", "ingress", "web"], "");
        table
            .lines()
            .nth(1)
            .filter(|row| row.contains(&lb_ip))
            .map(str::to_owned)
    });
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..4],
        ["web", "skiff", "web.example.com", lb_ip.as_str()]
    );

    let events = wait_for("the Warning events", || {
        let events = testbed.kubectl_json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web",
        ]);
        let reasons: Vec<String> = events["items"]
            .as_array()?
            .iter()
            .filter(|event| event["type"] == "Warning")
            .filter_map(|event| {
                Some(format!(
                    "{}: {}",
                    event["reason"].as_str()?,
                    event["message"].as_str()?
                ))
            })
            .collect();
        (reasons.len() >= 2).then_some(reasons)
    });
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("ServiceNotFound: Service \"default/missing\" not found")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e
            .starts_with("InvalidTLSSecret: TLS Secret \"default/half-tls\" has no \"tls.key\"")),
        "{events:?}"
    );
    let described = testbed.kubectl_ok(&["describe", "ingress", "web"], "");
    assert!(described.contains("ServiceNotFound"), "{described}");

    wait_for("both Ready nodes in skiff-ingress's EndpointSlice", || {
        let slice =
            testbed.kubectl_json(&["get", "endpointslice", "-n", "kube-system", "skiff-ingress"]);
        (slice["endpoints"].as_array()?.len() == 2).then_some(())
    });
    // The load balancer IP is routed to node 1, as an upstream router would.
    let via = testbed.cluster().node(1).ip().to_string();
    let output = testbed
        .cluster()
        .ext()
        .command("ip")
        .args(["route", "replace", "172.18.0.0/16", "via", &via])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    // The agents' Ingress proxies answer through the load balancer IP, and
    // on a node's own address: the backend Service is missing, so 503
    // naming the Ingress and the Service.
    for target in [lb_ip.clone(), testbed.cluster().node(2).ip().to_string()] {
        let (code, body) = wait_for("the Ingress proxy's answer", || {
            let answer = curl_from_ext(&testbed, &target, "web.example.com");
            (answer.0 == 503).then_some(answer)
        });
        assert_eq!(code, 503);
        assert!(
            body.contains("default/web") && body.contains("default/missing"),
            "{target}: {body}"
        );
    }
}

/// `curl http://TARGET/` with `Host: HOST` from the outside client:
/// (status, body); status 0 when nothing answered.
fn curl_from_ext(testbed: &Testbed, target: &str, host: &str) -> (u16, String) {
    let output = testbed
        .cluster()
        .ext()
        .command("curl")
        .args(["-s", "-m", "3", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://{target}/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}
