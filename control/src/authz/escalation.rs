//! Privilege-escalation prevention, as kube-apiserver's RBAC storage does
//! it: a user may only write a Role or ClusterRole whose rules it holds
//! (or with `escalate` on it), and only bind a role whose rules it holds
//! (or with `bind` on it). Members of system:masters may do both.

use serde_json::Value;

use super::attributes::{Action, Attributes, ResourceAction};
use super::policy::{Binding, Policy, RBAC_GROUP, rules_of};
use super::rules::{ALL, PolicyRule, compact, go_quoted_list, uncovered};
use super::user::{SYSTEM_MASTERS, User};
use crate::validation::go_quote;

/// A write of one RBAC object by `user`: `resource` is its plural,
/// `namespace` empty for the cluster-scoped kinds, `request_name` the name
/// on the URL (empty for a create, as in kube's request info).
pub struct RbacWrite<'a> {
    pub user: &'a User,
    pub resource: &'a str,
    pub namespace: &'a str,
    pub request_name: &'a str,
    pub object: &'a Value,
    pub old: Option<&'a Value>,
}

impl RbacWrite<'_> {
    /// Whether `user` may `verb` the RBAC `resource` named `name`.
    fn authorized(&self, policy: &Policy, verb: &str, resource: &str, name: &str) -> bool {
        let attributes = Attributes {
            user: self.user.clone(),
            action: Action::Resource(ResourceAction {
                verb: verb.to_owned(),
                group: RBAC_GROUP.to_owned(),
                version: "v1".to_owned(),
                resource: resource.to_owned(),
                namespace: self.namespace.to_owned(),
                name: name.to_owned(),
                ..ResourceAction::default()
            }),
        };
        policy.authorize(&attributes).allowed()
    }
}

/// Refuses (with the reason for the 403) a write that would grant what
/// the writer does not hold.
pub fn check(policy: &Policy, write: &RbacWrite) -> Result<(), String> {
    if write.user.in_group(SYSTEM_MASTERS) {
        return Ok(());
    }
    match write.resource {
        "roles" | "clusterroles" => check_role(policy, write),
        "rolebindings" | "clusterrolebindings" => check_binding(policy, write),
        _ => Ok(()),
    }
}

fn check_role(policy: &Policy, write: &RbacWrite) -> Result<(), String> {
    if write.authorized(policy, "escalate", write.resource, write.request_name) {
        return Ok(());
    }
    let rules = rules_of(write.object);
    let aggregates = !write.object["aggregationRule"].is_null();
    if let Some(old) = write.old
        && rules_of(old) == rules
        && old["aggregationRule"] == write.object["aggregationRule"]
    {
        return Ok(());
    }
    confirm_no_escalation(policy, write.user, write.namespace, &rules)?;
    if aggregates {
        let everything = [
            PolicyRule::resources(&[ALL], &[ALL], &[ALL]),
            PolicyRule::urls(&[ALL], &[ALL]),
        ];
        confirm_no_escalation(policy, write.user, write.namespace, &everything).map_err(|_| {
            "must have cluster-admin privileges to use the aggregationRule".to_owned()
        })?;
    }
    Ok(())
}

fn check_binding(policy: &Policy, write: &RbacWrite) -> Result<(), String> {
    let Some(binding) = Binding::from_object(write.object) else {
        return Ok(());
    };
    if let Some(old) = write.old.and_then(Binding::from_object)
        && old.role_ref == binding.role_ref
        && old.subjects == binding.subjects
    {
        return Ok(());
    }
    let role_resource = match binding.role_ref.kind.as_str() {
        "Role" => "roles",
        _ => "clusterroles",
    };
    if write.authorized(policy, "bind", role_resource, &binding.role_ref.name) {
        return Ok(());
    }
    let rules = policy.role_rules(&binding.role_ref, write.namespace)?;
    confirm_no_escalation(policy, write.user, write.namespace, rules)
}

/// kube's `ConfirmNoEscalation`: `user` holds every one of `rules` in
/// `namespace`, or the message naming those it does not.
pub fn confirm_no_escalation(
    policy: &Policy,
    user: &User,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let (held, errors) = policy.rules_for(user, namespace);
    let missing = uncovered(&held, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let mut descriptions: Vec<String> = compact(missing)
        .iter()
        .map(PolicyRule::compact_string)
        .collect();
    descriptions.sort();
    descriptions.dedup();
    let mut message = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        go_quote(&user.name),
        go_quoted_list(&user.groups),
        descriptions.join("\n")
    );
    if !errors.is_empty() {
        message.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(message)
}
