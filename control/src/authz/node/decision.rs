//! kube's Node authorizer, merged with what its NodeRestriction admission
//! plugin enforces on the objects a request names (skiff has no separate
//! admission for it): a node reads the Secrets, ConfigMaps, claims and
//! volumes of its own pods, one by name; writes its own Node, Lease and
//! pods; and has the few other rights skiff-agent needs.

use std::sync::LazyLock;

use super::graph::{Kind, NodeGraph};
use super::identity::{NodeIdentity, node_identity};
use crate::authz::attributes::{Action, Attributes, ResourceAction};
use crate::authz::rules::PolicyRule;

/// What the Node authorizer says; without an opinion, RBAC decides (so
/// that a binding to `system:nodes` still grants what it grants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeDecision {
    Allow,
    /// What NodeRestriction refuses: no binding can grant it.
    Deny(String),
    /// Not the Node authorizer's to grant; the reason says why, if it
    /// asked about a node's own objects.
    NoOpinion(String),
}

use NodeDecision::{Allow, Deny, NoOpinion};

/// The namespace of the nodes' heartbeat Leases.
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
const COORDINATION: &str = "coordination.k8s.io";

/// What every node may do, whichever its pods (kube's `NodeRules`, cut to
/// what skiff-agent asks for): report events, renew its certificate,
/// review access, and read what the Ingress proxy it runs serves.
static NODE_RULES: LazyLock<Vec<PolicyRule>> = LazyLock::new(|| {
    let read = &["get", "list", "watch"][..];
    vec![
        PolicyRule::resources(
            &["create", "update", "patch"],
            &["", "events.k8s.io"],
            &["events"],
        ),
        PolicyRule::resources(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        ),
        PolicyRule::resources(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews", "localsubjectaccessreviews"],
        ),
        PolicyRule::resources(read, &[""], &["services", "endpoints"]),
        PolicyRule::resources(
            &["list", "watch"],
            &["discovery.k8s.io"],
            &["endpointslices"],
        ),
        PolicyRule::resources(
            read,
            &["networking.k8s.io"],
            &["ingresses", "ingressclasses"],
        ),
    ]
});

/// The Node authorizer's decision on `attributes`.
pub fn authorize(graph: &NodeGraph, attributes: &Attributes) -> NodeDecision {
    let node = match node_identity(&attributes.user) {
        NodeIdentity::NotANode => return NoOpinion(String::new()),
        NodeIdentity::Unknown => {
            return NoOpinion(format!(
                "unknown node for user \"{}\"",
                attributes.user.name
            ));
        }
        NodeIdentity::Node(node) => node,
    };
    let request = Request { graph, node };
    if let Action::Resource(info) = &attributes.action {
        let decided = match (info.group.as_str(), info.resource.as_str()) {
            ("", "secrets") => Some(request.read_named(Kind::Secret, info)),
            ("", "configmaps") => Some(request.read_named(Kind::ConfigMap, info)),
            ("", "persistentvolumeclaims") => {
                Some(request.read_named(Kind::PersistentVolumeClaim, info))
            }
            ("", "persistentvolumes") => Some(request.read_named(Kind::PersistentVolume, info)),
            ("", "serviceaccounts") => Some(request.create_token(info)),
            ("", "nodes") => request.node(info),
            ("", "pods") => request.pod(info),
            (COORDINATION, "leases") => Some(request.lease(info)),
            _ => None,
        };
        if let Some(decision) = decided {
            return decision;
        }
    }
    if NODE_RULES
        .iter()
        .any(|rule| rule.allows(&attributes.action))
    {
        Allow
    } else {
        NoOpinion(String::new())
    }
}

/// A request by `node`, judged against `graph`.
struct Request<'a> {
    graph: &'a NodeGraph,
    node: &'a str,
}

impl Request<'_> {
    fn no_relationship(&self) -> NodeDecision {
        NoOpinion(format!(
            "no relationship found between node '{}' and this object",
            self.node
        ))
    }

    /// A read of one object its pods use (kube's
    /// `authorizeReadNamespacedObject`); list and watch must name it
    /// (a `metadata.name` field selector).
    fn read_named(&self, kind: Kind, info: &ResourceAction) -> NodeDecision {
        if !matches!(info.verb.as_str(), "get" | "list" | "watch") {
            return NoOpinion("can only read resources of this type".into());
        }
        if !info.subresource.is_empty() {
            return NoOpinion("cannot read subresource".into());
        }
        let namespaced = kind != Kind::PersistentVolume;
        if namespaced && info.namespace.is_empty() {
            return NoOpinion("can only read namespaced object of this type".into());
        }
        if info.name.is_empty() {
            return NoOpinion("No Object name found".into());
        }
        let reached = self
            .graph
            .reaches(self.node, kind, &info.namespace, &info.name);
        // Every skiff-agent runs the cluster's Ingress proxy, which
        // terminates TLS for every Ingress: any node serves the
        // certificates Ingresses name, so any node may read those Secrets.
        let ingress_tls =
            kind == Kind::Secret && self.graph.is_ingress_tls(&info.namespace, &info.name);
        if reached || ingress_tls {
            Allow
        } else {
            self.no_relationship()
        }
    }

    /// A token for a service account one of its pods runs as (kube's
    /// `authorizeCreateToken`; the TokenRequest body is not seen here).
    fn create_token(&self, info: &ResourceAction) -> NodeDecision {
        if info.verb != "create" || info.name.is_empty() {
            return NoOpinion("can only create tokens for individual service accounts".into());
        }
        if info.subresource != "token" {
            return NoOpinion("can only create token subresource of serviceaccount".into());
        }
        if self
            .graph
            .reaches(self.node, Kind::ServiceAccount, &info.namespace, &info.name)
        {
            Allow
        } else {
            self.no_relationship()
        }
    }

    /// Its heartbeat Lease (kube's `authorizeLease`); a create's name is
    /// in its body, which admission checks.
    fn lease(&self, info: &ResourceAction) -> NodeDecision {
        if !matches!(
            info.verb.as_str(),
            "get" | "create" | "update" | "patch" | "delete"
        ) {
            return NoOpinion("can only get, create, update, patch, or delete a node lease".into());
        }
        if info.namespace != NODE_LEASE_NAMESPACE {
            return NoOpinion(format!(
                "can only access leases in the \"{NODE_LEASE_NAMESPACE}\" system namespace"
            ));
        }
        if info.verb != "create" && info.name != self.node {
            return NoOpinion(
                "can only access node lease with the same name as the requesting node".into(),
            );
        }
        Allow
    }

    /// Any Node read; writes to its own only (NodeRestriction's
    /// `admitNode`); a create's name is in its body, which admission
    /// checks.
    fn node(&self, info: &ResourceAction) -> Option<NodeDecision> {
        let verb = info.verb.as_str();
        match (info.subresource.as_str(), verb) {
            ("" | "status", "get" | "list" | "watch") | ("", "create") => Some(Allow),
            ("", "update" | "patch" | "delete") | ("status", "update" | "patch") => {
                Some(if info.name == self.node {
                    Allow
                } else {
                    Deny(format!(
                        "node \"{}\" is not allowed to modify node \"{}\"",
                        self.node, info.name
                    ))
                })
            }
            _ => None,
        }
    }

    /// Any pod read; status, deletion and eviction of the pods bound to
    /// it only (NodeRestriction's `admitPodStatus`, `admitPod`,
    /// `admitPodEviction`, against the stored pod). Nodes create mirror
    /// pods in kube, and skiff has none.
    fn pod(&self, info: &ResourceAction) -> Option<NodeDecision> {
        let own = || {
            self.graph
                .reaches(self.node, Kind::Pod, &info.namespace, &info.name)
        };
        let only_own = |what: &str| {
            if own() {
                Allow
            } else {
                Deny(format!(
                    "node \"{}\" can only {what} with spec.nodeName set to itself",
                    self.node
                ))
            }
        };
        match (info.subresource.as_str(), info.verb.as_str()) {
            ("" | "status", "get" | "list" | "watch") => Some(Allow),
            ("", "create") => Some(Deny(format!(
                "node \"{}\" can only create mirror pods, and skiff has none",
                self.node
            ))),
            ("", "delete") => Some(only_own("delete pods")),
            ("status", "update" | "patch") => Some(only_own("update pod status for pods")),
            ("eviction", "create") => Some(only_own("evict pods")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
