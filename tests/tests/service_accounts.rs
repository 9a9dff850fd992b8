//! ServiceAccounts and their bound tokens against a real skiff-control on
//! etcd: a new namespace gets its `default` ServiceAccount and the
//! `kube-root-ca.crt` ConfigMap from the controllers, `kubectl create
//! token` issues a token that authenticates, and the Python `kubernetes`
//! client checks TokenRequest, TokenReview, the refusals (401) and the
//! ServiceAccount admission plugin (`tests/python/service_accounts.py`).
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::thread;
use std::time::{Duration, Instant};

use skiff_tests::{Testbed, run_python_script};

const NAMESPACE: &str = "sa-test";

#[test]
fn tokens_authenticate_their_service_account() {
    let mut testbed = Testbed::start(1).unwrap();
    let kubeconfig = testbed.start_control(&["--leader-elect=false"]).unwrap();
    testbed.kubectl_ok(&["create", "namespace", NAMESPACE], "");

    let deadline = Instant::now() + Duration::from_secs(30);
    let ca = loop {
        let account =
            testbed.run_kubectl(&["get", "serviceaccount", "default", "-n", NAMESPACE], "");
        let ca = testbed.run_kubectl(
            &[
                "get",
                "configmap",
                "kube-root-ca.crt",
                "-n",
                NAMESPACE,
                "-o",
                "jsonpath={.data.ca\\.crt}",
            ],
            "",
        );
        if let (Ok(_), Ok(ca)) = (account, ca) {
            break ca;
        }
        assert!(
            Instant::now() < deadline,
            "no default ServiceAccount or kube-root-ca.crt in {NAMESPACE}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    let pki_ca = std::fs::read_to_string(kubeconfig.parent().unwrap().join("pki/ca.crt")).unwrap();
    assert_eq!(ca, pki_ca, "kube-root-ca.crt holds the cluster CA");
    let table = testbed.kubectl_ok(&["get", "sa", "-n", NAMESPACE], "");
    assert!(
        table.starts_with("NAME") && table.contains("SECRETS") && table.contains("default"),
        "{table}"
    );

    let token = testbed.kubectl_ok(&["create", "token", "default", "-n", NAMESPACE], "");
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let short = testbed
        .run_kubectl(
            &[
                "create",
                "token",
                "default",
                "-n",
                NAMESPACE,
                "--duration=5m",
            ],
            "",
        )
        .expect_err("a five-minute token is refused");
    assert!(
        format!("{short:#}").contains("spec.expirationSeconds"),
        "{short:#}"
    );

    let stdout = run_python_script(
        "service_accounts.py",
        &[kubeconfig.as_os_str(), NAMESPACE.as_ref(), token.as_ref()],
    );
    assert!(stdout.contains("python client: service-account tokens checked"));
}
