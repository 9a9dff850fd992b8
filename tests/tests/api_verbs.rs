//! The API's verbs as clients other than kubectl use them, against a real
//! skiff-control on etcd: names refused for every kind as kube-apiserver
//! refuses them (a 422 naming `metadata.name`, nothing stored), and the
//! Python `kubernetes` client creating and deleting every kind skiff
//! serves, with deletecollection by label selector
//! (`tests/python/api_verbs.py`).
//!
//! Runs as root; clusters are serialised by the harness's lock.

use skiff_tests::{Testbed, run_python_script};

/// One object of `kind` named `name`, as YAML for `kubectl create -f -`.
fn manifest(kind: &str, name: &str) -> String {
    match kind {
        "Deployment" => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: '{name}'\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers: [{{name: c, image: skiff/busybox}}]\n"
        ),
        _ => format!("apiVersion: v1\nkind: {kind}\nmetadata:\n  name: '{name}'\n"),
    }
}

#[test]
fn bad_names_are_refused_for_every_kind_and_python_deletes_every_kind() {
    let mut testbed = Testbed::start(1).unwrap();
    let kubeconfig = testbed.start_control(&["--leader-elect=false"]).unwrap();

    let long = "a".repeat(300);
    let kinds = [
        ("ConfigMap", "/registry/configmaps/"),
        ("Deployment", "/registry/deployments/"),
        ("Namespace", "/registry/namespaces/"),
        ("Secret", "/registry/secrets/"),
    ];
    for (kind, prefix) in kinds {
        for name in ["..", "a/b", "UPPER", long.as_str()] {
            let refused = testbed
                .run_kubectl(&["create", "-f", "-"], &manifest(kind, name))
                .expect_err("a bad name is refused");
            let message = format!("{refused:#}");
            // kubectl prints the 422 Invalid Status this way.
            let expected = format!(
                "The {kind} \"{name}\" is invalid: metadata.name: Invalid value: \"{name}\": "
            );
            assert!(message.contains(&expected), "{kind} {name:?}: {message}");
        }
        let upper = testbed
            .run_kubectl(&["create", "-f", "-"], &manifest(kind, "UPPER"))
            .unwrap_err();
        let rule = if kind == "Namespace" {
            "a lowercase RFC 1123 label must consist of"
        } else {
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        };
        assert!(format!("{upper:#}").contains(rule), "{kind}: {upper:#}");
        let stored = testbed.store().list(prefix).unwrap();
        for object in &stored {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            assert!(
                !(name == ".." || name.contains('/') || name == "UPPER" || name.len() > 253),
                "{kind} {name:?} was stored"
            );
        }
    }
    // A good name still goes through.
    testbed
        .run_kubectl(&["create", "-f", "-"], &manifest("ConfigMap", "web.v1"))
        .unwrap();

    let stdout = run_python_script("api_verbs.py", &[&kubeconfig]);
    assert!(stdout.contains("python client: all deletes decoded"));
}
