//! NodeRestriction's checks on a node's creates: the name of a created
//! object is in the body, which the authorizer does not see, so the API
//! checks it here: a node creates only its own Node and its own Lease.

use serde_json::Value;

use super::identity::{NodeIdentity, node_identity};
use crate::authz::user::User;

/// Why `user` may not create `object` as the `resource` of `group`, if it
/// is a node that may not.
pub fn refuse_create(user: &User, group: &str, resource: &str, object: &Value) -> Option<String> {
    let NodeIdentity::Node(node) = node_identity(user) else {
        return None;
    };
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    match (group, resource) {
        ("", "nodes") if name != node => Some(format!(
            "node \"{node}\" is not allowed to modify node \"{name}\""
        )),
        ("coordination.k8s.io", "leases") if name != node => {
            Some("can only access node lease with the same name as the requesting node".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_node_creates_only_its_own_node_and_lease() {
        let n1 = User::node("n1");
        let named = |name: &str| json!({ "metadata": { "name": name } });
        assert_eq!(refuse_create(&n1, "", "nodes", &named("n1")), None);
        assert_eq!(
            refuse_create(&n1, "", "nodes", &named("n2")).unwrap(),
            "node \"n1\" is not allowed to modify node \"n2\""
        );
        assert_eq!(
            refuse_create(&n1, "coordination.k8s.io", "leases", &named("n1")),
            None
        );
        assert!(refuse_create(&n1, "coordination.k8s.io", "leases", &named("n2")).is_some());
        assert_eq!(refuse_create(&n1, "", "configmaps", &named("n2")), None);
        let admin = User::in_groups("admin", &["system:masters"]);
        assert_eq!(refuse_create(&admin, "", "nodes", &named("n2")), None);
    }
}
