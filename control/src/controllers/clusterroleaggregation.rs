//! ClusterRole aggregation (kube-controller-manager's
//! clusterrole-aggregation controller): a ClusterRole with an
//! `aggregationRule` gets as its `rules` those of every other ClusterRole
//! its selectors match, by name order, each rule once. The default `admin`,
//! `edit` and `view` roles are built this way.

use serde_json::Value;
use tracing::info;

use super::kind::Kind;
use super::{Context, Controller, ControllerError, meta, written};

pub struct ClusterRoleAggregation;

impl Controller for ClusterRoleAggregation {
    const NAME: &'static str = "clusterrole-aggregation";

    async fn reconcile(&mut self, context: &Context) -> Result<Vec<Kind>, ControllerError> {
        let roles = context.cache.list(Kind::ClusterRole);
        let mut wrote = Vec::new();
        for role in &roles {
            let Some(rules) = aggregated_rules(role, &roles) else {
                continue;
            };
            let current = role["rules"].as_array().cloned().unwrap_or_default();
            if current == rules {
                continue;
            }
            let mut updated = role.clone();
            updated["rules"] = Value::Array(rules);
            if written(context.client.update(Kind::ClusterRole, &updated).await)? {
                info!(
                    name = meta::name(role),
                    "aggregated the rules of its ClusterRoles"
                );
                wrote = vec![Kind::ClusterRole];
            }
        }
        Ok(wrote)
    }
}

/// The rules `role` aggregates from `roles`; `None` when it aggregates
/// nothing.
fn aggregated_rules(role: &Value, roles: &[Value]) -> Option<Vec<Value>> {
    let selectors = role["aggregationRule"]["clusterRoleSelectors"].as_array()?;
    let mut by_name: Vec<&Value> = roles.iter().collect();
    by_name.sort_by_key(|other| meta::name(other));
    let mut rules: Vec<Value> = Vec::new();
    for selector in selectors {
        for other in &by_name {
            if meta::name(other) == meta::name(role)
                || !meta::selector_matches(selector, &other["metadata"]["labels"])
            {
                continue;
            }
            for rule in other["rules"].as_array().into_iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    Some(rules)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::authz::bootstrap;

    fn rule(resource: &str) -> Value {
        json!({ "verbs": ["get"], "apiGroups": [""], "resources": [resource] })
    }

    #[test]
    fn rules_come_from_the_matching_roles_by_name_once_each() {
        let roles = vec![
            json!({
                "metadata": { "name": "top" },
                "aggregationRule": { "clusterRoleSelectors": [
                    { "matchLabels": { "a": "true" } },
                    { "matchExpressions": [{ "key": "b", "operator": "Exists" }] },
                ]},
                "rules": [rule("stale")],
            }),
            json!({ "metadata": { "name": "z", "labels": { "a": "true" } }, "rules": [rule("pods")] }),
            json!({ "metadata": { "name": "m", "labels": { "a": "true", "b": "x" } }, "rules": [rule("secrets"), rule("pods")] }),
            json!({ "metadata": { "name": "n", "labels": { "a": "false" } }, "rules": [rule("nodes")] }),
            json!({ "metadata": { "name": "plain" }, "rules": [rule("x")] }),
        ];
        assert_eq!(
            aggregated_rules(&roles[0], &roles),
            Some(vec![rule("secrets"), rule("pods")])
        );
        assert_eq!(aggregated_rules(&roles[4], &roles), None);
    }

    /// The default roles, aggregated once in name order: admin holds what
    /// edit holds, edit what view holds, and view reads no secrets.
    #[test]
    fn bootstrap_view_edit_admin_nest() {
        let mut roles = bootstrap::cluster_roles();
        for _ in 0..3 {
            let snapshot = roles.clone();
            for role in &mut roles {
                if let Some(rules) = aggregated_rules(role, &snapshot) {
                    role["rules"] = Value::Array(rules);
                }
            }
        }
        let rules_of = |name: &str| -> Vec<Value> {
            let role = roles.iter().find(|r| meta::name(r) == name).unwrap();
            role["rules"].as_array().unwrap().clone()
        };
        let (view, edit, admin) = (rules_of("view"), rules_of("edit"), rules_of("admin"));
        assert!(view.iter().all(|rule| edit.contains(rule)));
        assert!(edit.iter().all(|rule| admin.contains(rule)));
        assert!(edit.len() > view.len() && admin.len() > edit.len());
        let touches_secrets = |rules: &[Value]| {
            rules.iter().any(|rule| {
                rule["resources"]
                    .as_array()
                    .unwrap()
                    .contains(&json!("secrets"))
            })
        };
        assert!(!touches_secrets(&view));
        assert!(touches_secrets(&edit));
    }
}
