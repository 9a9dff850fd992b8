//! RBAC end to end against a real skiff-control on a real etcd, both on
//! loopback (no nodes: nothing here needs an agent), with a token file
//! of alice (system:masters) and bob (group developers): bob is refused
//! with kube-apiserver's messages until RoleBindings grant him `admin` in
//! one namespace and `view` in another; the aggregated default roles fill
//! in; the real kubectl's `auth can-i` (by impersonation), `auth can-i
//! --list` and `auth whoami` answer; bob cannot escalate through a binding
//! or a role, nor impersonate; the Python `kubernetes` client gets its 403
//! (`tests/python/rbac.py`).
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use skiff_tests::{
    Etcd, ProcessGuard, Store, control_command, eventually, free_local_bind, kubeconfig_path,
    kubectl, output_with_input, run_python_script, wait_for_api,
};

const TIMEOUT: Duration = Duration::from_secs(30);
const BOB: &str = "bob-token";

/// A kubeconfig for `token`'s user, from the admin's (which skiff-control
/// writes as JSON): same server and CA, the token instead of the client
/// certificate.
fn token_kubeconfig(admin: &Path, token: &str, out: &Path) -> PathBuf {
    let mut config: Value = serde_json::from_slice(&std::fs::read(admin).unwrap()).unwrap();
    config["users"][0]["user"] = json!({ "token": token });
    std::fs::write(out, serde_json::to_vec(&config).unwrap()).unwrap();
    out.to_owned()
}

fn run(kubeconfig: &Path, args: &[&str], input: Option<&str>) -> Output {
    let mut command = kubectl(kubeconfig).unwrap();
    command.args(args);
    output_with_input(&mut command, input.unwrap_or_default()).unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// kubectl must succeed; its stdout.
fn ok(kubeconfig: &Path, args: &[&str], input: Option<&str>) -> String {
    let output = run(kubeconfig, args, input);
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        stderr(&output)
    );
    stdout(&output)
}

/// kubectl must fail; its stderr.
fn refused(kubeconfig: &Path, args: &[&str], input: Option<&str>) -> String {
    let output = run(kubeconfig, args, input);
    assert!(
        !output.status.success(),
        "kubectl {args:?} succeeded: {}",
        stdout(&output)
    );
    stderr(&output)
}

fn binding(namespace: &str, name: &str, role: &str, user: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
    )
}

/// `kubectl auth can-i` as `user` by impersonation: the answer and the
/// exit code.
fn can_i(admin: &Path, args: &[&str], user: &str) -> (String, Option<i32>) {
    let mut all = vec!["auth", "can-i"];
    all.extend(args);
    all.extend(["--as", user]);
    let output = run(admin, &all, None);
    (stdout(&output).trim().to_owned(), output.status.code())
}

/// etcd and skiff-control (with its controllers) on loopback; both stop
/// when this is dropped.
struct ControlPlane {
    store: Store,
    admin: PathBuf,
    _control: ProcessGuard,
    _etcd: Etcd,
}

impl ControlPlane {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let etcd = Etcd::start(&[]).unwrap();
        let data_dir = dir.join("control");
        let log = std::fs::File::create(dir.join("control.log")).unwrap();
        let mut command = control_command(
            free_local_bind().unwrap(),
            &[etcd.local_endpoint()],
            &data_dir,
            extra,
        )
        .unwrap();
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let mut control = ProcessGuard::spawn(&mut command).unwrap();
        let admin = kubeconfig_path(&data_dir);
        wait_for_api(&admin, || control.is_running(), TIMEOUT).unwrap();
        Self {
            store: Store::new(etcd.local_endpoint()),
            admin,
            _control: control,
            _etcd: etcd,
        }
    }
}

#[test]
fn rbac_refuses_grants_and_answers_like_kube_apiserver() {
    let dir = tempdir();
    let tokens = dir.join("tokens.csv");
    std::fs::write(
        &tokens,
        format!("alice-token,alice,1,\"system:masters\"\n{BOB},bob,2,\"developers\"\n"),
    )
    .unwrap();
    let token_flag = format!("--token-file={}", tokens.display());
    let plane = ControlPlane::start(&dir, &["--leader-elect=false", &token_flag]);
    let admin = plane.admin.clone();
    let bob = token_kubeconfig(&admin, BOB, &dir.join("bob.kubeconfig"));
    let alice = token_kubeconfig(&admin, "alice-token", &dir.join("alice.kubeconfig"));

    // Before any binding: bob is refused, with kube-apiserver's words.
    let secrets = refused(&bob, &["get", "secrets", "-n", "default"], None);
    assert!(
        secrets.contains(
            "Error from server (Forbidden): secrets is forbidden: User \"bob\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
        ),
        "{secrets}"
    );
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: skiff/busybox}]}\n";
    let create = refused(&bob, &["create", "-n", "default", "-f", "-"], Some(pod));
    assert!(
        create.contains(
            "pods is forbidden: User \"bob\" cannot create resource \"pods\" in API group \"\" in the namespace \"default\""
        ),
        "{create}"
    );
    let nodes = refused(&bob, &["get", "nodes"], None);
    assert!(
        nodes.contains(
            "User \"bob\" cannot list resource \"nodes\" in API group \"\" at the cluster scope"
        ),
        "{nodes}"
    );
    // alice (system:masters by token) may do anything.
    ok(&alice, &["get", "secrets", "-n", "default"], None);

    // Who am I: the token users and the admin certificate.
    let whoami = ok(&bob, &["auth", "whoami"], None);
    assert!(
        whoami.contains("bob") && whoami.contains("[developers system:authenticated]"),
        "{whoami}"
    );
    let admin_whoami = ok(&admin, &["auth", "whoami", "-o", "json"], None);
    let review: Value = serde_json::from_str(&admin_whoami).unwrap();
    assert_eq!(review["kind"], "SelfSubjectReview");
    assert_eq!(review["status"]["userInfo"]["username"], "admin");
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!(["system:masters", "system:authenticated"])
    );

    // The default roles are there, admin/edit/view aggregated.
    let roles = ok(&admin, &["get", "clusterroles"], None);
    for role in ["cluster-admin", "admin", "edit", "view", "system:discovery"] {
        assert!(
            roles.lines().any(|l| l.starts_with(&format!("{role} "))),
            "{roles}"
        );
    }
    let view_rules = |name: &str| -> Vec<Value> {
        let role: Value = serde_json::from_str(&ok(
            &admin,
            &["get", "clusterrole", name, "-o", "json"],
            None,
        ))
        .unwrap();
        role["rules"].as_array().cloned().unwrap_or_default()
    };
    let view = eventually("view's aggregated rules", TIMEOUT, || {
        Some(view_rules("view")).filter(|rules| !rules.is_empty())
    });
    assert!(
        !view.iter().any(|rule| rule["resources"]
            .as_array()
            .unwrap()
            .contains(&json!("secrets"))),
        "view reads secrets: {view:?}"
    );

    // Bindings: admin in `team`, view in `viewers`, edit for dave in `team`.
    for namespace in ["team", "viewers"] {
        ok(&admin, &["create", "namespace", namespace], None);
    }
    let bindings = [
        binding("team", "bob-admin", "admin", "bob"),
        binding("viewers", "bob-view", "view", "bob"),
        binding("team", "dave-edit", "edit", "dave"),
    ]
    .join("---\n");
    ok(&admin, &["create", "-f", "-"], Some(&bindings));
    let listed = ok(&admin, &["get", "rolebindings", "-n", "team"], None);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("bob-admin ") && l.contains("ClusterRole/admin")),
        "{listed}"
    );
    eventually("bob lists pods in team", TIMEOUT, || {
        run(&bob, &["get", "pods", "-n", "team"], None)
            .status
            .success()
            .then_some(())
    });
    ok(&bob, &["get", "secrets", "-n", "team"], None);
    ok(&bob, &["get", "pods", "-n", "viewers"], None);
    refused(&bob, &["get", "pods", "-n", "default"], None);
    let view_secrets = refused(&bob, &["get", "secrets", "-n", "viewers"], None);
    assert!(
        view_secrets.contains("User \"bob\" cannot list resource \"secrets\" in API group \"\" in the namespace \"viewers\""),
        "{view_secrets}"
    );
    ok(&bob, &["create", "-n", "team", "-f", "-"], Some(pod));

    // can-i by impersonation, with its exit codes.
    assert_eq!(
        can_i(&admin, &["list", "pods", "-n", "team"], "bob"),
        ("yes".into(), Some(0))
    );
    assert_eq!(
        can_i(&admin, &["list", "pods", "-n", "default"], "bob"),
        ("no".into(), Some(1))
    );
    assert_eq!(
        can_i(&admin, &["get", "secrets", "-n", "team"], "dave"),
        ("yes".into(), Some(0))
    );
    assert_eq!(
        can_i(&admin, &["create", "rolebindings", "-n", "team"], "dave"),
        ("no".into(), Some(1))
    );
    assert_eq!(
        can_i(&admin, &["get", "secrets", "-n", "viewers"], "bob"),
        ("no".into(), Some(1))
    );
    let list = ok(
        &admin,
        &["auth", "can-i", "--list", "--as", "bob", "-n", "team"],
        None,
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("pods ") && l.contains("create")),
        "{list}"
    );
    assert!(!list.lines().any(|l| l.starts_with("nodes ")), "{list}");
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    let impersonating = refused(&bob, &["get", "pods", "-n", "team", "--as", "alice"], None);
    assert!(
        impersonating.contains(
            "users \"alice\" is forbidden: User \"bob\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
        ),
        "{impersonating}"
    );

    // Escalation: a cluster-wide binding is not bob's to create at all; a
    // binding in team of cluster-admin, or a role with more than he holds,
    // is refused by the escalation check.
    let cluster_binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: bob-root}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n\
         subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}]\n";
    let root = refused(&bob, &["create", "-f", "-"], Some(cluster_binding));
    assert!(
        root.contains("clusterrolebindings.rbac.authorization.k8s.io is forbidden: User \"bob\" cannot create resource \"clusterrolebindings\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"),
        "{root}"
    );
    let grab = refused(
        &bob,
        &["create", "-f", "-"],
        Some(&binding("team", "grab", "cluster-admin", "bob")),
    );
    assert!(
        grab.contains(
            "rolebindings.rbac.authorization.k8s.io \"grab\" is forbidden: user \"bob\" (groups=[\"developers\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}"
        ),
        "{grab}"
    );
    let role = |resource: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: r-{resource}, namespace: team}}\n\
             rules: [{{apiGroups: [\"\"], resources: [{resource}], verbs: [get]}}]\n"
        )
    };
    ok(&bob, &["create", "-f", "-"], Some(&role("pods")));
    let nodes_role = refused(&bob, &["create", "-f", "-"], Some(&role("nodes")));
    assert!(
        nodes_role
            .contains("roles.rbac.authorization.k8s.io \"r-nodes\" is forbidden: user \"bob\"")
            && nodes_role.contains("{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\"]}"),
        "{nodes_role}"
    );
    assert!(
        plane
            .store
            .list("/registry/rolebindings/team/")
            .unwrap()
            .iter()
            .all(|b| b["metadata"]["name"] != "grab")
    );

    // Validation as kube's: roleRef is fixed, rules need verbs.
    let changed = refused(
        &admin,
        &[
            "patch",
            "rolebinding",
            "bob-view",
            "-n",
            "viewers",
            "--type",
            "merge",
            "-p",
            r#"{"roleRef":{"name":"edit"}}"#,
        ],
        None,
    );
    assert!(
        changed.contains("roleRef: Invalid value: ") && changed.contains("cannot change roleRef"),
        "{changed}"
    );
    let no_verbs = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: empty}\nrules: [{apiGroups: [\"\"], resources: [pods]}]\n";
    let invalid = refused(&admin, &["create", "-f", "-"], Some(no_verbs));
    assert!(
        invalid.contains("rules[0].verbs: Required value: verbs must contain at least one value"),
        "{invalid}"
    );

    // The Python client gets its 403 with kube's Status.
    ok(
        &admin,
        &["create", "secret", "generic", "s1", "-n", "default"],
        None,
    );
    let printed = run_python_script("rbac.py", &[&bob]);
    assert!(printed.contains("python client: 403 Forbidden for bob"));
}

/// A fresh directory for the token file, the kubeconfigs and the server's
/// data and log.
fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skiff-rbac-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
