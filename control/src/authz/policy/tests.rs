//! After kube's plugin/pkg/auth/authorizer/rbac/rbac_test.go
//! (`TestAuthorizer`) and subject_locator_test.go: the same request under
//! different bindings, scopes and subjects.

use serde_json::{Value, json};

use super::*;
use crate::authz::attributes::{ListOptions, action};
use crate::authz::escalation::{RbacWrite, check};

fn user(name: &str, groups: &[&str]) -> User {
    User::in_groups(name, groups)
}

fn role(namespace: &str, name: &str, rules: Value) -> Value {
    json!({ "metadata": { "namespace": namespace, "name": name }, "rules": rules })
}

fn binding(namespace: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
    json!({
        "metadata": { "namespace": namespace, "name": name },
        "roleRef": { "apiGroup": RBAC_GROUP, "kind": kind, "name": role },
        "subjects": subjects,
    })
}

/// Roles as in kube's test: admin (everything in a namespace), reader
/// (get/list on pods and named secrets), metrics (a path).
fn policy() -> Policy {
    let mut policy = Policy::default();
    policy.add_cluster_role(&role(
        "",
        "admin",
        json!([{ "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] }]),
    ));
    policy.add_cluster_role(&role(
        "",
        "metrics",
        json!([{ "verbs": ["get"], "nonResourceURLs": ["/metrics", "/logs/*"] }]),
    ));
    policy.add_role(&role(
        "ns1",
        "reader",
        json!([
            { "verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods", "pods/log"] },
            { "verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s1"] },
        ]),
    ));
    // admin in ns1 only, through a RoleBinding of a ClusterRole.
    policy.add_role_binding(&binding(
        "ns1",
        "admins",
        "ClusterRole",
        "admin",
        json!([{ "kind": "Group", "name": "ns1-admins" }]),
    ));
    policy.add_role_binding(&binding(
        "ns1",
        "readers",
        "Role",
        "reader",
        json!([
            { "kind": "User", "name": "bob" },
            { "kind": "ServiceAccount", "name": "robot" },
        ]),
    ));
    policy.add_cluster_role_binding(&binding(
        "",
        "root",
        "ClusterRole",
        "admin",
        json!([{ "kind": "User", "name": "root" }]),
    ));
    policy.add_cluster_role_binding(&binding(
        "",
        "metrics",
        "ClusterRole",
        "metrics",
        json!([{ "kind": "Group", "name": "monitoring" }]),
    ));
    policy
}

fn allowed(policy: &Policy, who: &User, method: &str, path: &str, query: ListOptions) -> bool {
    let attributes = Attributes {
        user: who.clone(),
        action: action(method, path, query),
    };
    policy.authorize(&attributes).allowed()
}

#[test]
fn authorizer_table() {
    let policy = policy();
    let list = ListOptions::default();
    let watch = ListOptions {
        watch: true,
        field_selector: None,
    };
    let bob = user("bob", &["system:authenticated"]);
    let ns_admin = user("carol", &["ns1-admins"]);
    let root = user("root", &[]);
    let masters = user("alice", &["system:masters"]);
    let robot = user("system:serviceaccount:ns1:robot", &[]);
    let other_robot = user("system:serviceaccount:ns2:robot", &[]);
    let monitor = user("prom", &["monitoring"]);
    let cases: &[(&User, &str, &str, ListOptions, bool)] = &[
        // A Role's rules in its namespace, not elsewhere nor cluster-wide.
        (&bob, "GET", "/api/v1/namespaces/ns1/pods", list, true),
        (&bob, "GET", "/api/v1/namespaces/ns1/pods", watch, true),
        (&bob, "GET", "/api/v1/namespaces/ns1/pods/p", list, true),
        (&bob, "GET", "/api/v1/namespaces/ns2/pods", list, false),
        (&bob, "GET", "/api/v1/pods", list, false),
        (&bob, "POST", "/api/v1/namespaces/ns1/pods", list, false),
        (&bob, "DELETE", "/api/v1/namespaces/ns1/pods", list, false),
        // Subresources are their own resources.
        (&bob, "GET", "/api/v1/namespaces/ns1/pods/p/log", list, true),
        (
            &bob,
            "GET",
            "/api/v1/namespaces/ns1/pods/p/status",
            list,
            false,
        ),
        (
            &bob,
            "GET",
            "/api/v1/namespaces/ns1/pods/p/exec",
            list,
            false,
        ),
        // resourceNames.
        (&bob, "GET", "/api/v1/namespaces/ns1/secrets/s1", list, true),
        (
            &bob,
            "GET",
            "/api/v1/namespaces/ns1/secrets/s2",
            list,
            false,
        ),
        (&bob, "GET", "/api/v1/namespaces/ns1/secrets", list, false),
        // A ClusterRole bound in a namespace grants only there.
        (
            &ns_admin,
            "DELETE",
            "/apis/apps/v1/namespaces/ns1/deployments/d",
            list,
            true,
        ),
        (
            &ns_admin,
            "POST",
            "/api/v1/namespaces/ns1/pods/p/exec",
            list,
            true,
        ),
        (&ns_admin, "GET", "/api/v1/namespaces/ns2/pods", list, false),
        (&ns_admin, "GET", "/api/v1/nodes", list, false),
        (&ns_admin, "GET", "/metrics", list, false),
        // A ClusterRoleBinding grants everywhere, resources only.
        (&root, "GET", "/api/v1/nodes", list, true),
        (
            &root,
            "DELETE",
            "/api/v1/namespaces/ns9/secrets/x",
            list,
            true,
        ),
        (&root, "GET", "/metrics", list, false),
        // system:masters may do anything, paths included.
        (&masters, "GET", "/metrics", list, true),
        (&masters, "DELETE", "/api/v1/nodes/n", list, true),
        // Service accounts: a subject without a namespace is the binding's.
        (&robot, "GET", "/api/v1/namespaces/ns1/pods", list, true),
        (
            &other_robot,
            "GET",
            "/api/v1/namespaces/ns1/pods",
            list,
            false,
        ),
        // Groups and non-resource URLs with a trailing `*`.
        (&monitor, "GET", "/metrics", list, true),
        (&monitor, "GET", "/logs/kubelet", list, true),
        (&monitor, "POST", "/metrics", list, false),
        (&monitor, "GET", "/healthz", list, false),
    ];
    for (who, method, path, options, expected) in cases {
        assert_eq!(
            allowed(&policy, who, method, path, *options),
            *expected,
            "{} {method} {path} {options:?}",
            who.name
        );
    }
}

#[test]
fn reasons_name_the_binding_or_the_missing_role() {
    let mut policy = policy();
    let bob = user("bob", &[]);
    let attributes = Attributes {
        user: bob.clone(),
        action: action("GET", "/api/v1/namespaces/ns1/pods", ListOptions::default()),
    };
    assert_eq!(
        policy.authorize(&attributes),
        Decision::Allow(
            "RBAC: allowed by RoleBinding \"readers/ns1\" of Role \"reader\" to User \"bob\""
                .into()
        )
    );
    policy.add_cluster_role_binding(&binding(
        "",
        "dangling",
        "ClusterRole",
        "gone",
        json!([{ "kind": "User", "name": "bob" }]),
    ));
    let nodes = Attributes {
        user: bob,
        action: action("GET", "/api/v1/nodes", ListOptions::default()),
    };
    assert_eq!(
        policy.authorize(&nodes),
        Decision::Deny("RBAC: clusterrole.rbac.authorization.k8s.io \"gone\" not found".into())
    );
}

#[test]
fn rules_for_lists_cluster_then_namespace_rules() {
    let policy = policy();
    let (rules, errors) = policy.rules_for(&user("bob", &[]), "ns1");
    assert_eq!(rules.len(), 2);
    assert!(errors.is_empty());
    assert!(policy.rules_for(&user("bob", &[]), "ns2").0.is_empty());
    let (root_rules, _) = policy.rules_for(&user("root", &[]), "");
    assert_eq!(root_rules[0].verbs, ["*"]);
}

fn new_write<'a>(
    user: &'a User,
    resource: &'a str,
    namespace: &'a str,
    object: &'a Value,
) -> RbacWrite<'a> {
    RbacWrite {
        user,
        resource,
        namespace,
        request_name: "",
        object,
        old: None,
    }
}

#[test]
fn escalation_needs_the_rules_or_escalate_or_bind() {
    let mut policy = policy();
    let bob = user("bob", &["developers", "system:authenticated"]);
    let write = |resource, namespace, object| new_write(&bob, resource, namespace, object);
    // bob holds get/list/watch on pods in ns1: a Role with those is fine.
    let held = role(
        "ns1",
        "r",
        json!([{ "verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"] }]),
    );
    let binding_to_admin = binding(
        "",
        "mine",
        "ClusterRole",
        "admin",
        json!([{ "kind": "User", "name": "bob" }]),
    );
    let more = role(
        "ns1",
        "r",
        json!([{ "verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods", "secrets"] }]),
    );
    assert_eq!(check(&policy, &write("roles", "ns1", &held)), Ok(()));
    assert_eq!(
        check(&policy, &write("roles", "ns1", &more)),
        Err("user \"bob\" (groups=[\"developers\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n\
             {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"
            .into())
    );
    assert_eq!(
        check(&policy, &write("roles", "ns2", &held)).map_err(|e| e.lines().count()),
        Err(2)
    );
    assert_eq!(
        check(&policy, &write("clusterrolebindings", "", &binding_to_admin)),
        Err("user \"bob\" (groups=[\"developers\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}"
            .into())
    );
    // A binding of a role bob holds is fine; of a missing role, refused.
    let reader_binding = binding("ns1", "b", "Role", "reader", json!([]));
    assert_eq!(
        check(&policy, &write("rolebindings", "ns1", &reader_binding)),
        Ok(())
    );
    let missing = binding("ns1", "b", "Role", "nope", json!([]));
    assert_eq!(
        check(&policy, &write("rolebindings", "ns1", &missing)),
        Err("role.rbac.authorization.k8s.io \"nope\" not found".into())
    );
    // `escalate` on roles and `bind` on the ClusterRole lift the checks.
    policy.add_cluster_role(&role(
        "",
        "granter",
        json!([
            { "verbs": ["escalate"], "apiGroups": [RBAC_GROUP], "resources": ["roles"] },
            { "verbs": ["bind"], "apiGroups": [RBAC_GROUP], "resources": ["clusterroles"], "resourceNames": ["admin"] },
        ]),
    ));
    policy.add_cluster_role_binding(&binding(
        "",
        "granters",
        "ClusterRole",
        "granter",
        json!([{ "kind": "Group", "name": "developers" }]),
    ));
    assert_eq!(check(&policy, &write("roles", "ns1", &more)), Ok(()));
    assert_eq!(
        check(
            &policy,
            &write("clusterrolebindings", "", &binding_to_admin)
        ),
        Ok(())
    );
    // An aggregated ClusterRole needs everything.
    let aggregating = json!({
        "metadata": { "name": "agg" },
        "aggregationRule": { "clusterRoleSelectors": [{ "matchLabels": { "a": "b" } }] },
    });
    assert_eq!(
        check(&policy, &write("clusterroles", "", &aggregating)),
        Err("must have cluster-admin privileges to use the aggregationRule".into())
    );
    let masters = user("alice", &["system:masters"]);
    let by_masters = RbacWrite {
        user: &masters,
        ..write("clusterroles", "", &aggregating)
    };
    assert_eq!(check(&policy, &by_masters), Ok(()));
}
