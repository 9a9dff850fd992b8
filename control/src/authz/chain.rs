//! kube-apiserver's authorizer chain (`--authorization-mode=Node,RBAC`
//! behind the privileged group): the first authorizer with an opinion
//! decides; when none has one, the request is refused with their reasons.

use std::sync::Arc;

use super::attributes::Attributes;
use super::node::{self, NodeDecision, NodeGraph};
use super::policy::{Decision, Policy};
use super::user::SYSTEM_MASTERS;

/// The indexes one request is judged against, as last seen.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    pub policy: Arc<Policy>,
    pub nodes: Arc<NodeGraph>,
}

impl Authorizer {
    pub fn authorize(&self, attributes: &Attributes) -> Decision {
        if attributes.user.in_group(SYSTEM_MASTERS) {
            return self.policy.authorize(attributes);
        }
        let node_reason = match node::authorize(&self.nodes, attributes) {
            NodeDecision::Allow => return Decision::Allow(String::new()),
            NodeDecision::Deny(reason) => return Decision::Deny(reason),
            NodeDecision::NoOpinion(reason) => reason,
        };
        match self.policy.authorize(attributes) {
            Decision::Deny(rbac_reason) => {
                // kube's union authorizer joins the reasons of all.
                let reasons: Vec<String> = [node_reason, rbac_reason]
                    .into_iter()
                    .filter(|reason| !reason.is_empty())
                    .collect();
                Decision::Deny(reasons.join("\n"))
            }
            allowed => allowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::authz::attributes::{ListOptions, action};
    use crate::authz::user::User;

    fn decide(authorizer: &Authorizer, method: &str, path: &str) -> Decision {
        authorizer.authorize(&Attributes {
            user: User::node("n1").authenticated(),
            action: action(method, path, ListOptions::default()),
        })
    }

    #[test]
    fn rbac_decides_what_the_node_authorizer_has_no_opinion_on() {
        let mut policy = Policy::default();
        policy.add_cluster_role(&json!({
            "metadata": { "name": "node-extras" },
            "rules": [{ "verbs": ["get"], "apiGroups": [""], "resources": ["namespaces", "secrets"] }],
        }));
        policy.add_cluster_role_binding(&json!({
            "metadata": { "name": "node-extras" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "node-extras" },
            "subjects": [{ "kind": "Group", "name": "system:nodes" }],
        }));
        let bound = Authorizer {
            policy: Arc::new(policy),
            ..Authorizer::default()
        };
        let unbound = Authorizer::default();
        let secret = "/api/v1/namespaces/ns/secrets/s2";
        assert_eq!(
            decide(&unbound, "GET", secret),
            Decision::Deny("no relationship found between node 'n1' and this object".into())
        );
        assert!(decide(&bound, "GET", secret).allowed());
        assert_eq!(
            decide(&unbound, "GET", "/api/v1/namespaces/ns"),
            Decision::Deny(String::new())
        );
        assert!(decide(&bound, "GET", "/api/v1/namespaces/ns").allowed());
        // What NodeRestriction refuses, no binding grants.
        let other_node = Decision::Deny("node \"n1\" is not allowed to modify node \"n2\"".into());
        assert_eq!(decide(&bound, "PUT", "/api/v1/nodes/n2"), other_node);
        assert_eq!(
            decide(
                &unbound,
                "POST",
                "/apis/certificates.k8s.io/v1/certificatesigningrequests"
            ),
            Decision::Allow(String::new())
        );
    }
}
