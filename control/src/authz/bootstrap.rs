//! The default roles and bindings every cluster has (kube's
//! `bootstrappolicy`), limited to the resources skiff serves; the server
//! creates the missing ones at start, as kube-apiserver's
//! `rbac/bootstrap-roles` post-start hook does.

use serde_json::{Value, json};

use super::policy::RBAC_GROUP;
use super::rules::PolicyRule;
use super::user::{AUTHENTICATED, SYSTEM_MASTERS, UNAUTHENTICATED};

/// The label every bootstrap object carries.
const BOOTSTRAPPING: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

const CORE: &str = "";
const APPS: &str = "apps";
const BATCH: &str = "batch";
const COORDINATION: &str = "coordination.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const EVENTS: &str = "events.k8s.io";
const NETWORKING: &str = "networking.k8s.io";
const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";
const CERTIFICATES: &str = "certificates.k8s.io";

fn rule(verbs: &[&str], group: &str, resources: &[&str]) -> PolicyRule {
    PolicyRule::resources(verbs, &[group], resources)
}

/// kube's `eventsRule`.
fn events_rule() -> PolicyRule {
    PolicyRule::resources(&["create", "update", "patch"], &[CORE, EVENTS], &["events"])
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> Value {
    let mut all_labels = serde_json::Map::new();
    for (key, value) in std::iter::once(&BOOTSTRAPPING).chain(labels) {
        all_labels.insert((*key).to_owned(), json!(value));
    }
    json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": { "rbac.authorization.kubernetes.io/autoupdate": "true" },
        },
        "rules": rules,
    })
}

/// A ClusterRole whose rules the aggregation controller fills from the
/// roles labelled `label: "true"`.
fn aggregated(name: &str, labels: &[(&str, &str)], label: &str) -> Value {
    let mut role = cluster_role(name, labels, Vec::new());
    role["aggregationRule"] = json!({
        "clusterRoleSelectors": [{ "matchLabels": { label: "true" } }],
    });
    role
}

/// The bootstrap ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![
                PolicyRule::resources(&["*"], &["*"], &["*"]),
                PolicyRule::urls(&["*"], &["*"]),
            ],
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![PolicyRule::urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![PolicyRule::urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["create"],
                    AUTHORIZATION,
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(&["create"], AUTHENTICATION, &["selfsubjectreviews"]),
            ],
        ),
        aggregated("admin", &[], AGGREGATE_TO_ADMIN),
        aggregated("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        aggregated("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
        cluster_role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, "true")],
            vec![
                rule(&["create"], AUTHORIZATION, &["localsubjectaccessreviews"]),
                rule(READ_WRITE, RBAC_GROUP, &["roles", "rolebindings"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(AGGREGATE_TO_EDIT, "true")],
            vec![
                rule(
                    READ,
                    CORE,
                    &["pods/attach", "pods/exec", "pods/portforward", "secrets"],
                ),
                rule(
                    WRITE,
                    CORE,
                    &["pods", "pods/attach", "pods/exec", "pods/portforward"],
                ),
                rule(
                    WRITE,
                    CORE,
                    &[
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "services",
                        "persistentvolumeclaims",
                        "configmaps",
                        "secrets",
                        "events",
                    ],
                ),
                rule(
                    WRITE,
                    APPS,
                    &[
                        "statefulsets",
                        "statefulsets/scale",
                        "daemonsets",
                        "deployments",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                    ],
                ),
                rule(WRITE, BATCH, &["jobs", "cronjobs"]),
                rule(WRITE, NETWORKING, &["ingresses"]),
                rule(READ_WRITE, COORDINATION, &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(AGGREGATE_TO_VIEW, "true")],
            vec![
                rule(
                    READ,
                    CORE,
                    &[
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "services",
                        "services/status",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "configmaps",
                    ],
                ),
                rule(
                    READ,
                    CORE,
                    &[
                        "limitranges",
                        "resourcequotas",
                        "bindings",
                        "events",
                        "pods/status",
                        "resourcequotas/status",
                        "namespaces/status",
                        "replicationcontrollers/status",
                        "pods/log",
                    ],
                ),
                rule(READ, CORE, &["namespaces"]),
                rule(READ, DISCOVERY, &["endpointslices"]),
                rule(
                    READ,
                    APPS,
                    &[
                        "controllerrevisions",
                        "statefulsets",
                        "statefulsets/status",
                        "statefulsets/scale",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/status",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/status",
                        "replicasets/scale",
                    ],
                ),
                rule(
                    READ,
                    BATCH,
                    &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
                ),
                rule(READ, NETWORKING, &["ingresses", "ingresses/status"]),
            ],
        ),
        cluster_role(
            "system:node",
            &[],
            vec![
                rule(
                    &["create"],
                    AUTHORIZATION,
                    &["subjectaccessreviews", "localsubjectaccessreviews"],
                ),
                rule(READ, CORE, &["services"]),
                rule(&["create", "get", "list", "watch"], CORE, &["nodes"]),
                rule(&["update", "patch"], CORE, &["nodes/status"]),
                rule(&["update", "patch"], CORE, &["nodes"]),
                rule(&["create", "update", "patch"], CORE, &["events"]),
                rule(READ, CORE, &["pods"]),
                rule(&["create", "delete"], CORE, &["pods"]),
                rule(&["update", "patch"], CORE, &["pods/status"]),
                rule(READ, CORE, &["secrets", "configmaps"]),
                rule(
                    &["get"],
                    CORE,
                    &["persistentvolumeclaims", "persistentvolumes"],
                ),
                rule(&["get"], CORE, &["endpoints"]),
                rule(
                    &["get", "create", "update", "patch", "delete"],
                    COORDINATION,
                    &["leases"],
                ),
                rule(
                    &["create", "get", "list", "watch"],
                    CERTIFICATES,
                    &["certificatesigningrequests"],
                ),
                rule(&["create"], CORE, &["serviceaccounts/token"]),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            &[],
            vec![rule(
                &["create", "get", "list", "watch"],
                CERTIFICATES,
                &["certificatesigningrequests"],
            )],
        ),
        cluster_role(
            "system:node-proxier",
            &[],
            vec![
                rule(&["list", "watch"], CORE, &["services", "endpoints"]),
                rule(READ, CORE, &["nodes"]),
                events_rule(),
                rule(&["list", "watch"], DISCOVERY, &["endpointslices"]),
            ],
        ),
        cluster_role(
            "system:kube-scheduler",
            &[],
            vec![
                events_rule(),
                rule(&["create"], COORDINATION, &["leases"]),
                rule(&["get", "update"], COORDINATION, &["leases"]).named(&["kube-scheduler"]),
                rule(READ, CORE, &["nodes"]),
                rule(&["get", "list", "watch", "delete"], CORE, &["pods"]),
                rule(&["create"], CORE, &["pods/binding", "bindings"]),
                rule(&["patch", "update"], CORE, &["pods/status"]),
                rule(READ, CORE, &["services", "replicationcontrollers"]),
                rule(READ, APPS, &["replicasets", "statefulsets"]),
                rule(READ, CORE, &["persistentvolumeclaims", "persistentvolumes"]),
                rule(&["create"], AUTHORIZATION, &["subjectaccessreviews"]),
                rule(READ, CORE, &["namespaces"]),
            ],
        ),
        cluster_role(
            "system:kube-controller-manager",
            &[],
            vec![
                events_rule(),
                rule(&["create"], COORDINATION, &["leases"]),
                rule(&["get", "update"], COORDINATION, &["leases"])
                    .named(&["kube-controller-manager"]),
                rule(&["create"], CORE, &["secrets"]),
                rule(&["delete"], CORE, &["secrets"]),
                rule(&["get"], CORE, &["configmaps", "namespaces", "secrets"]),
                rule(&["update"], CORE, &["secrets"]),
                rule(&["create"], AUTHORIZATION, &["subjectaccessreviews"]),
                PolicyRule::resources(&["list", "watch"], &["*"], &["*"]),
            ],
        ),
    ]
}

fn binding(name: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": { BOOTSTRAPPING.0: BOOTSTRAPPING.1 },
            "annotations": { "rbac.authorization.kubernetes.io/autoupdate": "true" },
        },
        "roleRef": { "apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name },
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!({ "apiGroup": RBAC_GROUP, "kind": "Group", "name": name })
}

fn user(name: &str) -> Value {
    json!({ "apiGroup": RBAC_GROUP, "kind": "User", "name": name })
}

/// The bootstrap ClusterRoleBindings, each named as its role.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", json!([group(SYSTEM_MASTERS)])),
        binding("system:discovery", json!([group(AUTHENTICATED)])),
        binding("system:basic-user", json!([group(AUTHENTICATED)])),
        binding(
            "system:public-info-viewer",
            json!([group(AUTHENTICATED), group(UNAUTHENTICATED)]),
        ),
        // Nodes are authorized by kube's Node authorizer; the binding
        // exists, without subjects, as kube-apiserver leaves it.
        binding("system:node", json!([])),
        // What kubeadm binds as `kubeadm:kubelet-bootstrap`: a bootstrap
        // token may ask for the node's first certificate, and nothing more.
        binding(
            "system:node-bootstrapper",
            json!([group(crate::bootstrap_token::GROUP)]),
        ),
        binding("system:node-proxier", json!([user("system:kube-proxy")])),
        binding(
            "system:kube-scheduler",
            json!([user("system:kube-scheduler")]),
        ),
        binding(
            "system:kube-controller-manager",
            json!([user("system:kube-controller-manager")]),
        ),
    ]
}
