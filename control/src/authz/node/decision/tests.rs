//! After kube's plugin/pkg/auth/authorizer/node/node_authorizer_test.go
//! (`TestAuthorizer`): requests by nodes on the objects their pods use,
//! on others' objects, and on what no node's pods use.

use serde_json::{Value, json};

use super::*;
use crate::authz::attributes::{ListOptions, action};
use crate::authz::follow::Objects;
use crate::authz::user::User;

/// A pod in `ns` bound to `node`, using what its name says it uses.
fn pod(node: &str, name: &str, uses: &str) -> Value {
    json!({
        "metadata": { "namespace": "ns", "name": name },
        "spec": {
            "nodeName": node,
            "serviceAccountName": format!("sa-{uses}"),
            "imagePullSecrets": [{ "name": format!("pull-{uses}") }],
            "volumes": [
                { "name": "s", "secret": { "secretName": format!("s-{uses}") } },
                { "name": "c", "configMap": { "name": format!("c-{uses}") } },
                { "name": "p", "projected": { "sources": [
                    { "secret": { "name": format!("projected-s-{uses}") } },
                    { "configMap": { "name": format!("projected-c-{uses}") } },
                ]}},
                { "name": "claim", "persistentVolumeClaim": { "claimName": format!("pvc-{uses}") } },
                { "name": "scratch", "ephemeral": { "volumeClaimTemplate": {} } },
            ],
            "initContainers": [{ "name": "init", "env": [
                { "name": "A", "valueFrom": { "secretKeyRef": { "name": format!("env-s-{uses}"), "key": "k" } } },
                { "name": "B", "valueFrom": { "configMapKeyRef": { "name": format!("env-c-{uses}"), "key": "k" } } },
            ]}],
            "containers": [{ "name": "main", "envFrom": [
                { "secretRef": { "name": format!("envfrom-s-{uses}") } },
                { "configMapRef": { "name": format!("envfrom-c-{uses}") } },
            ]}],
            "ephemeralContainers": [{ "name": "debug", "envFrom": [
                { "secretRef": { "name": format!("debug-s-{uses}") } },
            ]}],
        },
    })
}

/// Pods of n1 and n2 (using objects suffixed 1 and 2), an unbound pod
/// (suffix 0), their claims bound to volumes, and an Ingress with TLS.
fn graph() -> NodeGraph {
    let mut objects = Objects::new();
    for (node, name, uses) in [("n1", "p1", "1"), ("n2", "p2", "2"), ("", "p0", "0")] {
        objects.insert(format!("/registry/pods/ns/{name}"), pod(node, name, uses));
        objects.insert(
            format!("/registry/persistentvolumeclaims/ns/pvc-{uses}"),
            json!({
                "metadata": { "namespace": "ns", "name": format!("pvc-{uses}") },
                "spec": { "volumeName": format!("pv-{uses}") },
            }),
        );
    }
    objects.insert(
        "/registry/ingress/ns/web".into(),
        json!({
            "metadata": { "namespace": "ns", "name": "web" },
            "spec": { "tls": [{ "secretName": "web-tls" }] },
        }),
    );
    NodeGraph::from_objects(&objects)
}

fn decide(graph: &NodeGraph, who: &User, method: &str, path: &str, query: &str) -> NodeDecision {
    let options = ListOptions {
        watch: query.split('&').any(|pair| pair == "watch=true"),
        field_selector: query
            .split('&')
            .find_map(|pair| pair.strip_prefix("fieldSelector=")),
    };
    authorize(
        graph,
        &Attributes {
            user: who.clone(),
            action: action(method, path, options),
        },
    )
}

fn no_relationship(node: &str) -> NodeDecision {
    NoOpinion(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

#[test]
fn a_node_reads_what_its_pods_use_and_nothing_else() {
    let graph = graph();
    let n1 = User::node("n1");
    let mut objects = vec![
        "/api/v1/namespaces/ns/serviceaccounts/sa-X/token".to_owned(),
        "/api/v1/namespaces/ns/persistentvolumeclaims/pvc-X".to_owned(),
        "/api/v1/persistentvolumes/pv-X".to_owned(),
    ];
    for secret in ["s", "pull", "projected-s", "env-s", "envfrom-s", "debug-s"] {
        objects.push(format!("/api/v1/namespaces/ns/secrets/{secret}-X"));
    }
    for map in ["c", "projected-c", "env-c", "envfrom-c"] {
        objects.push(format!("/api/v1/namespaces/ns/configmaps/{map}-X"));
    }
    for object in &objects {
        let method = if object.ends_with("/token") {
            "POST"
        } else {
            "GET"
        };
        let own = object.replace('X', "1");
        assert_eq!(decide(&graph, &n1, method, &own, ""), Allow, "{own}");
        for other in ["2", "0", "missing"] {
            let path = object.replace('X', other);
            assert_eq!(
                decide(&graph, &n1, method, &path, ""),
                no_relationship("n1"),
                "{path}"
            );
        }
    }
    // A generic ephemeral volume's claim is the pod's.
    assert_eq!(
        decide(
            &graph,
            &n1,
            "GET",
            "/api/v1/namespaces/ns/persistentvolumeclaims/p1-scratch",
            ""
        ),
        Allow
    );
}

#[test]
fn secrets_are_read_one_by_one() {
    let graph = graph();
    let n1 = User::node("n1");
    let secrets = "/api/v1/namespaces/ns/secrets";
    let cases: &[(&str, &str, &str, NodeDecision)] = &[
        ("GET", secrets, "fieldSelector=metadata.name=s-1", Allow),
        (
            "GET",
            secrets,
            "watch=true&fieldSelector=metadata.name=s-1",
            Allow,
        ),
        (
            "GET",
            secrets,
            "fieldSelector=metadata.name=s-2",
            no_relationship("n1"),
        ),
        ("GET", secrets, "", NoOpinion("No Object name found".into())),
        (
            "GET",
            "/api/v1/secrets",
            "",
            NoOpinion("can only read namespaced object of this type".into()),
        ),
        (
            "PUT",
            "/api/v1/namespaces/ns/secrets/s-1",
            "",
            NoOpinion("can only read resources of this type".into()),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/ns/configmaps/c-1",
            "",
            NoOpinion("can only read resources of this type".into()),
        ),
        // Every node serves the Ingresses' certificates.
        ("GET", "/api/v1/namespaces/ns/secrets/web-tls", "", Allow),
        (
            "GET",
            "/api/v1/namespaces/other/secrets/web-tls",
            "",
            no_relationship("n1"),
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/configmaps/web-tls",
            "",
            no_relationship("n1"),
        ),
    ];
    for (method, path, query, expected) in cases {
        assert_eq!(
            &decide(&graph, &n1, method, path, query),
            expected,
            "{method} {path}?{query}"
        );
    }
}

#[test]
fn a_node_writes_its_own_node_lease_and_pods() {
    let graph = graph();
    let n1 = User::node("n1");
    let modify_n2 = || Deny("node \"n1\" is not allowed to modify node \"n2\"".into());
    let lease_name =
        || NoOpinion("can only access node lease with the same name as the requesting node".into());
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    let cases: Vec<(&str, String, NodeDecision)> =
        vec![
        ("GET", "/api/v1/nodes".into(), Allow),
        ("GET", "/api/v1/nodes/n2".into(), Allow),
        ("POST", "/api/v1/nodes".into(), Allow),
        ("PUT", "/api/v1/nodes/n1".into(), Allow),
        ("PATCH", "/api/v1/nodes/n1/status".into(), Allow),
        ("DELETE", "/api/v1/nodes/n1".into(), Allow),
        ("PUT", "/api/v1/nodes/n2".into(), modify_n2()),
        ("PATCH", "/api/v1/nodes/n2/status".into(), modify_n2()),
        ("DELETE", "/api/v1/nodes/n2".into(), modify_n2()),
        ("DELETE", "/api/v1/nodes".into(), NoOpinion(String::new())),
        ("POST", leases.into(), Allow),
        ("GET", format!("{leases}/n1"), Allow),
        ("PUT", format!("{leases}/n1"), Allow),
        ("PUT", format!("{leases}/n2"), lease_name()),
        (
            "GET",
            leases.into(),
            NoOpinion("can only get, create, update, patch, or delete a node lease".into()),
        ),
        (
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/default/leases/n1".into(),
            NoOpinion("can only access leases in the \"kube-node-lease\" system namespace".into()),
        ),
        ("GET", "/api/v1/pods".into(), Allow),
        ("GET", "/api/v1/namespaces/ns/pods/p2".into(), Allow),
        ("PUT", "/api/v1/namespaces/ns/pods/p1/status".into(), Allow),
        ("PATCH", "/api/v1/namespaces/ns/pods/p1/status".into(), Allow),
        ("DELETE", "/api/v1/namespaces/ns/pods/p1".into(), Allow),
        (
            "PATCH",
            "/api/v1/namespaces/ns/pods/p2/status".into(),
            Deny(
                "node \"n1\" can only update pod status for pods with spec.nodeName set to itself"
                    .into(),
            ),
        ),
        (
            "DELETE",
            "/api/v1/namespaces/ns/pods/p0".into(),
            Deny("node \"n1\" can only delete pods with spec.nodeName set to itself".into()),
        ),
        (
            "POST",
            "/api/v1/namespaces/ns/pods".into(),
            Deny("node \"n1\" can only create mirror pods, and skiff has none".into()),
        ),
        (
            "PUT",
            "/api/v1/namespaces/ns/pods/p1".into(),
            NoOpinion(String::new()),
        ),
        (
            "GET",
            "/api/v1/namespaces/ns/pods/p1/log".into(),
            NoOpinion(String::new()),
        ),
    ];
    for (method, path, expected) in cases {
        assert_eq!(
            decide(&graph, &n1, method, &path, ""),
            expected,
            "{method} {path}"
        );
    }
}

#[test]
fn what_every_node_may_do_and_what_is_left_to_rbac() {
    let graph = graph();
    let n1 = User::node("n1");
    let allowed = [
        ("POST", "/api/v1/namespaces/ns/events"),
        ("PATCH", "/apis/events.k8s.io/v1/namespaces/ns/events/e"),
        (
            "POST",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        ),
        (
            "GET",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/c",
        ),
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews"),
        ("GET", "/api/v1/services"),
        ("GET", "/api/v1/namespaces/ns/endpoints/e"),
        ("GET", "/apis/discovery.k8s.io/v1/endpointslices"),
        ("GET", "/apis/networking.k8s.io/v1/ingresses"),
        ("GET", "/apis/networking.k8s.io/v1/ingressclasses/nginx"),
    ];
    for (method, path) in allowed {
        assert_eq!(
            decide(&graph, &n1, method, path, ""),
            Allow,
            "{method} {path}"
        );
    }
    let left = [
        (
            "DELETE",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests/c",
        ),
        ("POST", "/api/v1/namespaces/ns/services"),
        (
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices/e",
        ),
        ("GET", "/apis/apps/v1/deployments"),
        ("GET", "/api/v1/namespaces"),
        ("GET", "/healthz"),
    ];
    for (method, path) in left {
        assert_eq!(
            decide(&graph, &n1, method, path, ""),
            NoOpinion(String::new()),
            "{method} {path}"
        );
    }
}

#[test]
fn only_nodes_are_judged() {
    let graph = graph();
    let secret = "/api/v1/namespaces/ns/secrets/s-1";
    for who in [
        User::in_groups("system:node:n1", &[]),
        User::in_groups("alice", &["system:authenticated"]),
        User::in_groups("admin", &["system:masters"]),
    ] {
        assert_eq!(
            decide(&graph, &who, "GET", secret, ""),
            NoOpinion(String::new()),
            "{who:?}"
        );
    }
    for name in ["alice", "system:node:"] {
        assert_eq!(
            decide(
                &graph,
                &User::in_groups(name, &["system:nodes"]),
                "GET",
                secret,
                ""
            ),
            NoOpinion(format!("unknown node for user \"{name}\"")),
        );
    }
}
