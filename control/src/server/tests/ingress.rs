//! Ingress end to end through the API and the real kubectl: validation
//! (422s naming the field), the default IngressClass `skiff` and its
//! admission, `kube-system/skiff-ingress` with its node EndpointSlice, an
//! Ingress's ADDRESS from the load balancer pool, and the Warning Events
//! for a missing Service and bad TLS Secrets.

use super::workloads::{controllers, eventually};
use super::*;
use crate::api::ServiceNetwork;

const LB_POOL: &str = "172.18.255.0/28";

fn ingress(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": { "name": name },
        "spec": spec,
    })
}

fn rule(host: &str, path_type: &str, service: &str) -> Value {
    json!({ "host": host, "http": { "paths": [{ "path": "/", "pathType": path_type,
        "backend": { "service": { "name": service, "port": { "number": 80 } } } }] } })
}

async fn start() -> Cluster {
    let etcd = Arc::new(Etcd::start());
    etcd.store().await;
    let api = ApiConfig {
        network: ServiceNetwork {
            load_balancer_pools: LB_POOL.parse().unwrap(),
            ..ServiceNetwork::default()
        },
        ..ApiConfig::default()
    };
    Cluster::on(etcd, api, Some(controllers())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingresses_are_validated_defaulted_and_given_an_address() {
    let cluster = start().await;

    // Bad input: a 422 naming the field, as kube-apiserver words it.
    let (ok, _, stderr) = cluster
        .send(
            "create",
            &ingress(
                "bad",
                json!({ "rules": [rule("a.example.com", "Regex", "web")] }),
            ),
        )
        .await;
    assert!(!ok);
    assert!(
        stderr.contains("spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""),
        "{stderr}"
    );
    let (ok, _, stderr) = cluster
        .send(
            "create",
            &ingress(
                "bad",
                json!({ "rules": [rule("10.1.2.3", "Prefix", "web")] }),
            ),
        )
        .await;
    assert!(!ok);
    assert!(
        stderr.contains(
            "spec.rules[0].host: Invalid value: \"10.1.2.3\": must be a DNS name, not an IP address"
        ),
        "{stderr}"
    );
    let (code, body) = cluster
        .send_json(
            "POST",
            "/apis/networking.k8s.io/v1/namespaces/default/ingresses",
            &ingress(
                "bad",
                json!({ "rules": [rule("Bad_Host", "Prefix", "web")] }),
            ),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["details"]["causes"][0]["field"], "spec.rules[0].host");

    // The default class, made at start.
    let classes = cluster.ok(&["get", "ingressclass"]).await;
    let row: Vec<&str> = classes.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["skiff", "skiff.io/ingress-controller", "<none>"]);
    let class = cluster
        .ok(&["get", "ingressclass", "skiff", "-o", "json"])
        .await;
    let class: Value = serde_json::from_str(&class).unwrap();
    assert_eq!(
        class["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );

    // The Service in front of the nodes, its load balancer IP from the pool,
    // and its EndpointSlice listing each Ready node.
    let service = cluster
        .ok(&[
            "get",
            "service",
            "-n",
            "kube-system",
            "skiff-ingress",
            "-o",
            "json",
        ])
        .await;
    let service: Value = serde_json::from_str(&service).unwrap();
    assert_eq!(service["spec"]["type"], "LoadBalancer");
    assert_eq!(
        service["metadata"]["labels"]["app.kubernetes.io/name"],
        "skiff-ingress"
    );
    let lb_ip = service["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .expect("an IP from the pool")
        .to_owned();
    assert!(lb_ip.starts_with("172.18.255."), "{lb_ip}");
    for (name, ip, ready) in [
        ("node1", "172.30.0.11", "True"),
        ("node2", "172.30.0.12", "False"),
    ] {
        let node = json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": name },
            "status": { "addresses": [{ "type": "InternalIP", "address": ip }],
                "conditions": [{ "type": "Ready", "status": ready }] } });
        let (code, body) = cluster.send_json("POST", "/api/v1/nodes", &node).await;
        assert_eq!(code, 201, "{body}");
    }
    let path = "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices/skiff-ingress";
    let slice = eventually("the skiff-ingress EndpointSlice", 10, || async {
        let (code, slice) = cluster.get_json(path).await;
        (code == 200 && !slice["endpoints"].as_array()?.is_empty()).then_some(slice)
    })
    .await;
    assert_eq!(slice["endpoints"].as_array().unwrap().len(), 1, "{slice}");
    assert_eq!(slice["endpoints"][0]["addresses"][0], "172.30.0.11");
    assert_eq!(slice["endpoints"][0]["nodeName"], "node1");

    // A new Ingress gets the default class, then the load balancer IP.
    let spec = json!({
        "rules": [rule("web.example.com", "Prefix", "missing")],
        "tls": [
            { "hosts": ["web.example.com"], "secretName": "absent-tls" },
            { "hosts": ["half.example.com"], "secretName": "half-tls" },
        ],
    });
    let (ok, _, stderr) = cluster
        .run(&[
            "create",
            "secret",
            "generic",
            "half-tls",
            "--from-literal=tls.crt=cert",
        ])
        .await;
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = cluster.send("create", &ingress("web", spec)).await;
    assert!(ok, "{stderr}");
    let row = eventually("the Ingress's ADDRESS", 10, || async {
        let table = cluster.ok(&["get", "ingress", "web"]).await;
        let row = table.lines().nth(1)?.to_owned();
        row.contains(&lb_ip).then_some(row)
    })
    .await;
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..5],
        ["web", "skiff", "web.example.com", lb_ip.as_str(), "80,"]
    );

    // The Events name what is missing, once each.
    let wanted = [
        ("ServiceNotFound", "Service \"default/missing\" not found"),
        (
            "SecretNotFound",
            "TLS Secret \"default/absent-tls\" not found",
        ),
        (
            "InvalidTLSSecret",
            "TLS Secret \"default/half-tls\" has no \"tls.key\"",
        ),
    ];
    let events = eventually("the Ingress's Warning events", 10, || async {
        let events = cluster
            .ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=web",
                "-o",
                "json",
            ])
            .await;
        let events: Value = serde_json::from_str(&events).unwrap();
        let items = events["items"].as_array()?.clone();
        let all = wanted.iter().all(|(reason, message)| {
            items.iter().any(|event| {
                event["reason"] == *reason
                    && event["type"] == "Warning"
                    && event["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(message))
            })
        });
        all.then_some(items)
    })
    .await;
    // Several passes ran since (the status write among them): no repeats.
    assert_eq!(events.len(), wanted.len(), "{events:#?}");
    let described = cluster.ok(&["describe", "ingress", "web"]).await;
    assert!(described.contains("ServiceNotFound"), "{described}");
}
