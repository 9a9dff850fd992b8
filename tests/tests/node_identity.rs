//! Node identities against a real skiff-control on etcd: a bootstrap token
//! authenticates as `system:bootstrap:<id>` and an expired one does not; a
//! bootstrapper's request for `system:node:n1`'s client certificate is
//! approved automatically and signed, and that certificate authenticates as
//! `system:node:n1` in `system:nodes`; requests for another signer or with
//! server usages wait for a person, and `kubectl certificate approve|deny`
//! decides them. The Node authorizer limits a node to its own objects and
//! to the Secrets and ConfigMaps of its pods. A node's kubelet writes
//! through the API server with its own identity: pod status, Events and
//! the pod's final deletion.
//!
//! Runs as root; clusters are serialised by the harness's lock.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use skiff_tests::{Testbed, eventually};

const KUBELET_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// A private key and a PEM request for `common_name` in `organization`.
fn request(common_name: &str, organization: &str) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, organization);
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, pem)
}

fn csr_manifest(name: &str, pem: &str, signer: &str, usages: &[&str]) -> String {
    serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": { "name": name },
        "spec": {
            "request": STANDARD.encode(pem),
            "signerName": signer,
            "usages": usages,
        },
    })
    .to_string()
}

/// `kubectl --kubeconfig <kubeconfig> <args>`: its stdout or its stderr.
fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
    let out = skiff_tests::kubectl(kubeconfig)
        .unwrap()
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `kubectl create` of `manifest` (kept in `dir` as `<name>.json`) as
/// the user of `kubeconfig`.
fn create_as(kubeconfig: &Path, dir: &Path, name: &str, manifest: &str) -> Result<String, String> {
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, manifest).unwrap();
    kubectl_as(kubeconfig, &["create", "-f", file.to_str().unwrap()])
}

/// A copy of the admin kubeconfig whose user is `credentials` (kubectl
/// `config set-credentials` flags).
fn kubeconfig_with(admin: &Path, dir: &Path, name: &str, credentials: &[&str]) -> PathBuf {
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::copy(admin, &path).unwrap();
    let mut args = vec!["config", "set-credentials", name];
    args.extend(credentials);
    kubectl_as(&path, &args).unwrap();
    kubectl_as(
        &path,
        &["config", "set-context", "--current", "--user", name],
    )
    .unwrap();
    path
}

fn csr(testbed: &Testbed, name: &str) -> Value {
    testbed.kubectl_json(&["get", "csr", name])
}

/// Polls `name` until `done` holds for it.
fn wait_for_csr(testbed: &Testbed, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current = csr(testbed, name);
        if done(&current) {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never {what}: {current:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn condition<'a>(csr: &'a Value, kind: &str) -> Option<&'a Value> {
    csr["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn issued(csr: &Value) -> bool {
    csr["status"]["certificate"]
        .as_str()
        .is_some_and(|c| !c.is_empty())
}

#[test]
fn bootstrap_tokens_and_node_client_certificates() {
    let dir = std::env::temp_dir().join(format!("skiff-node-identity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut testbed = Testbed::start(1).unwrap();
    let admin = testbed.start_control(&["--leader-elect=false"]).unwrap();
    let token_file = testbed.bootstrap_token_file();
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_owned();
    let (id, _) = token.split_once('.').unwrap();
    let secret = testbed.kubectl_json(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        &format!("bootstrap-token-{id}"),
    ]);
    assert_eq!(secret["type"], "bootstrap.kubernetes.io/token");

    // An expired token, made as kubeadm makes one.
    let expired_secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "bootstrap-token-zzzzzz", "namespace": "kube-system" },
        "type": "bootstrap.kubernetes.io/token",
        "data": {
            "token-id": STANDARD.encode("zzzzzz"),
            "token-secret": STANDARD.encode("0123456789abcdef"),
            "expiration": STANDARD.encode("2020-01-01T00:00:00Z"),
            "usage-bootstrap-authentication": STANDARD.encode("true"),
        },
    });
    testbed.kubectl_ok(&["create", "-f", "-"], &expired_secret.to_string());
    let expired = kubeconfig_with(
        &admin,
        &dir,
        "expired",
        &["--token", "zzzzzz.0123456789abcdef"],
    );
    let refused = kubectl_as(&expired, &["get", "--raw", "/api"]).unwrap_err();
    assert!(refused.contains("Unauthorized"), "{refused}");
    // The token cleaner deletes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while testbed
        .run_kubectl(
            &[
                "-n",
                "kube-system",
                "get",
                "secret",
                "bootstrap-token-zzzzzz",
            ],
            "",
        )
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "the expired token's Secret stays"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let bootstrap = kubeconfig_with(&admin, &dir, "bootstrap", &["--token", &token]);
    // Requests that wait for a person, made before the one approved at
    // once: when that one is approved, the approver has seen these.
    let (_, alice) = request("alice", "dev");
    create_as(
        &bootstrap,
        &dir,
        "alice",
        &csr_manifest("alice", &alice, CLIENT_SIGNER, &["client auth"]),
    )
    .unwrap();
    let (_, serving) = request("system:node:n1", "system:nodes");
    create_as(
        &bootstrap,
        &dir,
        "n1-serving",
        &csr_manifest(
            "n1-serving",
            &serving,
            KUBELET_SIGNER,
            &["digital signature", "server auth"],
        ),
    )
    .unwrap();
    let (key, n1) = request("system:node:n1", "system:nodes");
    create_as(
        &bootstrap,
        &dir,
        "n1",
        &csr_manifest(
            "n1",
            &n1,
            KUBELET_SIGNER,
            &["digital signature", "key encipherment", "client auth"],
        ),
    )
    .unwrap();

    let approved = wait_for_csr(&testbed, "n1", "issued", issued);
    assert_eq!(
        approved["spec"]["username"],
        format!("system:bootstrap:{id}")
    );
    assert!(
        approved["spec"]["groups"]
            .as_array()
            .unwrap()
            .contains(&"system:bootstrappers".into()),
        "{approved:#}"
    );
    let approval = condition(&approved, "Approved").expect("approved");
    assert_eq!(approval["reason"], "AutoApproved");
    assert_eq!(approval["status"], "True");
    for waiting in ["alice", "n1-serving"] {
        let pending = csr(&testbed, waiting);
        assert!(pending["status"]["conditions"].is_null(), "{pending:#}");
    }
    let listed = testbed.kubectl_ok(&["get", "csr", "n1"], "");
    assert!(listed.contains("Approved,Issued"), "{listed}");

    // The issued certificate authenticates the node.
    let cert = STANDARD
        .decode(approved["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let (cert_file, key_file) = (dir.join("n1.crt"), dir.join("n1.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let node = kubeconfig_with(
        &admin,
        &dir,
        "node",
        &[
            "--client-certificate",
            cert_file.to_str().unwrap(),
            "--client-key",
            key_file.to_str().unwrap(),
        ],
    );
    // A renewal by the node itself is approved too; its spec shows who
    // asked.
    let (_, renewal) = request("system:node:n1", "system:nodes");
    create_as(
        &node,
        &dir,
        "n1-renewal",
        &csr_manifest(
            "n1-renewal",
            &renewal,
            KUBELET_SIGNER,
            &["digital signature", "client auth"],
        ),
    )
    .unwrap();
    let renewed = wait_for_csr(&testbed, "n1-renewal", "issued", issued);
    assert_eq!(renewed["spec"]["username"], "system:node:n1");
    assert_eq!(renewed["spec"]["groups"][0], "system:nodes");
    assert!(
        condition(&renewed, "Approved").unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("self")
    );

    // A person decides the others.
    testbed.kubectl_ok(&["certificate", "approve", "alice"], "");
    let alice = wait_for_csr(&testbed, "alice", "issued", issued);
    assert_eq!(
        condition(&alice, "Approved").unwrap()["reason"],
        "KubectlApprove"
    );
    testbed.kubectl_ok(&["certificate", "deny", "n1-serving"], "");
    let denied = wait_for_csr(&testbed, "n1-serving", "denied", |c| {
        condition(c, "Denied").is_some()
    });
    assert!(!issued(&denied));

    // Bad requests are refused naming the field.
    let refused = create_as(
        &admin,
        &dir,
        "bad",
        &csr_manifest("bad", "not a request", "", &[]),
    )
    .unwrap_err();
    assert!(
        refused.contains("spec.request: Invalid value")
            && refused.contains("spec.usages: Required value")
            && refused.contains("spec.signerName: Required value"),
        "{refused}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The field manager the agent's writes carry.
const AGENT_MANAGER: &str = "skiff-agent";

/// Whether `object` has a managedFields entry of `operation` by the agent,
/// on `subresource` (or the object itself for `None`): the API server
/// records one for each write it serves, a write straight to etcd none.
fn written_by_agent(object: &Value, operation: &str, subresource: Option<&str>) -> bool {
    (object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten())
    .any(|entry| {
        entry["manager"] == AGENT_MANAGER
            && entry["operation"] == operation
            && entry["subresource"].as_str() == subresource
    })
}

#[test]
fn the_kubelet_writes_through_the_api_server_as_its_node() {
    let mut testbed = Testbed::start_running_pods(1).unwrap();
    testbed.start_control(&[]).unwrap();
    let node = testbed.cluster().node(1).name().to_owned();
    // A projected clusterTrustBundle source is left out with an Event.
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "reporter", "namespace": "default" },
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": "skiff/busybox",
                "command": ["sh", "-c", "sleep 1000"],
                "volumeMounts": [{ "name": "bundle", "mountPath": "/bundle" }],
            }],
            "volumes": [{ "name": "bundle", "projected": { "sources": [
                { "clusterTrustBundle": { "name": "roots", "path": "roots.pem" } },
            ] } }],
        },
    });
    testbed.kubectl_ok(&["apply", "-f", "-"], &pod.to_string());

    let timeout = Duration::from_secs(60);
    let running = eventually(
        "the pod running, its status written by the agent",
        timeout,
        || {
            let pod = testbed.kubectl_json(&["get", "pod", "reporter", "--show-managed-fields"]);
            (pod["status"]["phase"] == "Running").then_some(pod)
        },
    );
    assert!(
        written_by_agent(&running, "Update", Some("status")),
        "no status update by {AGENT_MANAGER}: {:#}",
        running["metadata"]["managedFields"]
    );
    let event = eventually("the agent's Event about the pod", timeout, || {
        let events = testbed.kubectl_json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=reporter,reason=VolumeSourceSkipped",
            "--show-managed-fields",
        ]);
        events["items"].as_array()?.first().cloned()
    });
    assert_eq!(event["reportingInstance"], node.as_str(), "{event:#}");
    assert_eq!(event["source"]["host"], node.as_str(), "{event:#}");
    assert!(written_by_agent(&event, "Update", None), "{event:#}");

    // The agent finishes the graceful delete: the pod goes once its
    // container is down.
    testbed.kubectl_ok(&["delete", "pod", "reporter", "--wait=false"], "");
    eventually("the pod deleted by the agent", timeout, || {
        let args = ["get", "pod", "reporter", "--ignore-not-found", "-o", "name"];
        testbed
            .kubectl_ok(&args, "")
            .trim()
            .is_empty()
            .then_some(())
    });
}

/// A client certificate for node `node` (asked for by the admin, approved
/// by `kubectl certificate approve`) and a kubeconfig that uses it.
fn node_kubeconfig(testbed: &Testbed, admin: &Path, dir: &Path, node: &str) -> PathBuf {
    let (key, pem) = request(&format!("system:node:{node}"), "system:nodes");
    create_as(
        admin,
        dir,
        node,
        &csr_manifest(
            node,
            &pem,
            KUBELET_SIGNER,
            &["digital signature", "client auth"],
        ),
    )
    .unwrap();
    testbed.kubectl_ok(&["certificate", "approve", node], "");
    let signed = wait_for_csr(testbed, node, "issued", issued);
    let cert = STANDARD
        .decode(signed["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let (cert_file, key_file) = (
        dir.join(format!("{node}.crt")),
        dir.join(format!("{node}.key")),
    );
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    kubeconfig_with(
        admin,
        dir,
        node,
        &[
            "--client-certificate",
            cert_file.to_str().unwrap(),
            "--client-key",
            key_file.to_str().unwrap(),
        ],
    )
}

/// A pod in `shop` bound to `node`, mounting Secret `secret` and reading
/// ConfigMap `config_map` into its environment.
fn bound_pod(name: &str, node: &str, secret: &str, config_map: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": "shop" },
        "spec": {
            "nodeName": node,
            "volumes": [{ "name": "creds", "secret": { "secretName": secret } }],
            "containers": [{
                "name": "main",
                "image": "busybox",
                "env": [{ "name": "MODE", "valueFrom": {
                    "configMapKeyRef": { "name": config_map, "key": "mode" },
                }}],
                "volumeMounts": [{ "name": "creds", "mountPath": "/creds" }],
            }],
        },
    })
    .to_string()
}

/// Asserts that `result` is a 403 whose message contains `expected`.
fn assert_forbidden(result: Result<String, String>, expected: &str) {
    let error = result.expect_err(expected);
    assert!(
        error.contains("Forbidden") && error.contains(expected),
        "wanted a 403 with {expected:?}: {error}"
    );
}

/// Whether `user` in `system:nodes` may `verb` the Secret `name` in
/// `shop`, as a SubjectAccessReview answers.
fn node_may(testbed: &Testbed, user: &str, verb: &str, name: &str) -> bool {
    let review = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user,
            "groups": ["system:nodes", "system:authenticated"],
            "resourceAttributes": {
                "namespace": "shop", "verb": verb, "resource": "secrets", "name": name,
            },
        },
    });
    let answer = testbed.kubectl_ok(
        &[
            "create",
            "--raw",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            "-f",
            "-",
        ],
        &review.to_string(),
    );
    let answer: Value = serde_json::from_str(&answer).unwrap();
    answer["status"]["allowed"].as_bool().unwrap()
}

#[test]
fn a_node_cannot_read_another_node_s_pods_secrets() {
    let dir = std::env::temp_dir().join(format!("skiff-node-authorizer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut testbed = Testbed::start(1).unwrap();
    let admin = testbed.start_control(&["--leader-elect=false"]).unwrap();
    testbed.kubectl_ok(&["create", "namespace", "shop"], "");
    for secret in ["s1", "s2"] {
        testbed.kubectl_ok(
            &[
                "-n",
                "shop",
                "create",
                "secret",
                "generic",
                secret,
                "--from-literal=k=v",
            ],
            "",
        );
    }
    testbed.kubectl_ok(
        &[
            "-n",
            "shop",
            "create",
            "configmap",
            "c1",
            "--from-literal=mode=on",
        ],
        "",
    );
    for node in ["n1", "n2"] {
        let manifest = serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": { "name": node },
        });
        testbed.kubectl_ok(&["create", "-f", "-"], &manifest.to_string());
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": node, "namespace": "kube-node-lease" },
            "spec": { "holderIdentity": node },
        });
        testbed.kubectl_ok(&["create", "-f", "-"], &lease.to_string());
    }
    testbed.kubectl_ok(&["create", "-f", "-"], &bound_pod("p1", "n1", "s1", "c1"));
    testbed.kubectl_ok(&["create", "-f", "-"], &bound_pod("p2", "n2", "s2", "c1"));
    let n1 = node_kubeconfig(&testbed, &admin, &dir, "n1");
    let n2 = node_kubeconfig(&testbed, &admin, &dir, "n2");

    // The node authorizer's graph follows etcd: n1 reads its pod's Secret
    // once the graph has the pod.
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(error) = kubectl_as(&n1, &["-n", "shop", "get", "secret", "s1"]) {
        assert!(Instant::now() < deadline, "n1 never read s1: {error}");
        std::thread::sleep(Duration::from_millis(100));
    }
    kubectl_as(&n1, &["-n", "shop", "get", "configmap", "c1"]).unwrap();
    kubectl_as(&n2, &["-n", "shop", "get", "secret", "s2"]).unwrap();
    assert_forbidden(
        kubectl_as(&n1, &["-n", "shop", "get", "secret", "s2"]),
        "secrets \"s2\" is forbidden: User \"system:node:n1\" cannot get resource \"secrets\" \
         in API group \"\" in the namespace \"shop\": \
         no relationship found between node 'n1' and this object",
    );
    assert_forbidden(
        kubectl_as(&n1, &["-n", "shop", "get", "secrets"]),
        "cannot list resource \"secrets\"",
    );
    assert_forbidden(
        kubectl_as(&n1, &["get", "secrets", "--all-namespaces"]),
        "cannot list resource \"secrets\"",
    );
    // SubjectAccessReviews ask the same chain.
    assert!(node_may(&testbed, "system:node:n1", "get", "s1"));
    assert!(!node_may(&testbed, "system:node:n1", "get", "s2"));
    assert!(!node_may(&testbed, "system:node:n1", "delete", "s1"));

    // Its own Node and Lease, not another's.
    kubectl_as(&n1, &["label", "node", "n1", "zone=a"]).unwrap();
    assert_forbidden(
        kubectl_as(&n1, &["label", "node", "n2", "zone=a"]),
        "node \"n1\" is not allowed to modify node \"n2\"",
    );
    let n3 =
        serde_json::json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "n3" } });
    assert_forbidden(
        create_as(&n1, &dir, "node-n3", &n3.to_string()),
        "node \"n1\" is not allowed to modify node \"n3\"",
    );
    let lease = ["-n", "kube-node-lease", "annotate", "lease"];
    kubectl_as(&n1, &[&lease[..], &["n1", "renewed=yes"]].concat()).unwrap();
    assert_forbidden(
        kubectl_as(&n1, &[&lease[..], &["n2", "renewed=yes"]].concat()),
        "can only access node lease with the same name as the requesting node",
    );

    // The status of its own pods, not another node's; nor their deletion.
    let status = |pod: &str| {
        [
            "-n",
            "shop",
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"message":"seen by n1"}}"#,
        ]
        .map(str::to_owned)
    };
    let patched = kubectl_as(&n1, &status("p1").each_ref().map(String::as_str)).unwrap();
    assert!(patched.contains("patched"), "{patched}");
    assert_forbidden(
        kubectl_as(&n1, &status("p2").each_ref().map(String::as_str)),
        "node \"n1\" can only update pod status for pods with spec.nodeName set to itself",
    );
    assert_forbidden(
        kubectl_as(&n1, &["-n", "shop", "delete", "pod", "p2", "--wait=false"]),
        "node \"n1\" can only delete pods with spec.nodeName set to itself",
    );
    let p2 = testbed.kubectl_json(&["-n", "shop", "get", "pod", "p2"]);
    assert!(p2["metadata"]["deletionTimestamp"].is_null(), "{p2:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}
