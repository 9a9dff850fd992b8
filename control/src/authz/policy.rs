//! The RBAC objects one request is judged against, indexed: kube's RBAC
//! authorizer and rule resolver (`VisitRulesFor`) over them, and how a
//! subject of a binding applies to a user.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use skiff_etcd::keys;

use super::attributes::{Action, Attributes};
use super::follow::Objects;
use super::rules::PolicyRule;
use super::user::{SYSTEM_MASTERS, User};

/// rbac.authorization.k8s.io, the group of the four kinds.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// A binding's `roleRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    #[serde(default)]
    pub api_group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// One of a binding's `subjects`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Subject {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

impl Subject {
    /// Whether the subject is `user`; a service account without a
    /// namespace is one of `namespace` (kube's `appliesToUser`).
    fn applies_to(&self, user: &User, namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.in_group(&self.name),
            "ServiceAccount" => {
                let namespace = if self.namespace.is_empty() {
                    namespace
                } else {
                    &self.namespace
                };
                !namespace.is_empty() && user.is_service_account(namespace, &self.name)
            }
            _ => false,
        }
    }

    /// `User "bob"`, `ServiceAccount "ns/name"`, as kube's reasons name
    /// subjects.
    fn describe(&self, namespace: &str) -> String {
        match self.kind.as_str() {
            "ServiceAccount" => {
                let namespace = if self.namespace.is_empty() {
                    namespace
                } else {
                    &self.namespace
                };
                format!("{} \"{namespace}/{}\"", self.kind, self.name)
            }
            _ => format!("{} \"{}\"", self.kind, self.name),
        }
    }
}

/// A RoleBinding (`namespace` set) or ClusterRoleBinding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub namespace: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingFields {
    #[serde(default)]
    role_ref: RoleRef,
    #[serde(default)]
    subjects: Option<Vec<Subject>>,
}

#[derive(Deserialize)]
struct RoleFields {
    #[serde(default)]
    rules: Option<Vec<PolicyRule>>,
}

fn name_of(object: &Value) -> (String, String) {
    let field = |f: &str| {
        object["metadata"][f]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    (field("namespace"), field("name"))
}

/// The rules a stored Role or ClusterRole holds.
pub fn rules_of(object: &Value) -> Vec<PolicyRule> {
    RoleFields::deserialize(object)
        .ok()
        .and_then(|fields| fields.rules)
        .unwrap_or_default()
}

impl Binding {
    /// A stored RoleBinding or ClusterRoleBinding; `None` when it does not
    /// decode.
    pub fn from_object(object: &Value) -> Option<Self> {
        let fields = BindingFields::deserialize(object).ok()?;
        let (namespace, name) = name_of(object);
        Some(Self {
            name,
            namespace,
            role_ref: fields.role_ref,
            subjects: fields.subjects.unwrap_or_default(),
        })
    }

    /// `ClusterRoleBinding "x"` or `RoleBinding "x/ns"`.
    fn describe(&self) -> String {
        if self.namespace.is_empty() {
            format!("ClusterRoleBinding \"{}\"", self.name)
        } else {
            format!("RoleBinding \"{}/{}\"", self.name, self.namespace)
        }
    }

    fn subject_for(&self, user: &User, namespace: &str) -> Option<&Subject> {
        self.subjects
            .iter()
            .find(|subject| subject.applies_to(user, namespace))
    }
}

/// A rule that applies, with the binding and subject that grant it; or a
/// role that could not be found.
type Visited<'a> = Result<(&'a Binding, &'a Subject, &'a PolicyRule), String>;

/// Every Role, ClusterRole and binding, by namespace and name.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    role_bindings: HashMap<String, Vec<Binding>>,
    cluster_role_bindings: Vec<Binding>,
}

/// What the authorizer decided, and why (a `SubjectAccessReview`'s
/// reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    /// Nothing allows it; the reason lists the roles that could not be
    /// found, if any, after the Node authorizer's reason, if it had one.
    Deny(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(reason) | Decision::Deny(reason) => reason,
        }
    }
}

/// How a stored object of one kind is added to the index.
type AddTo = fn(&mut Policy, &Value);

/// Where the four kinds are stored, and what each object is added as.
const STORED: [(&str, AddTo); 4] = [
    (keys::ROLES, Policy::add_role),
    (keys::CLUSTER_ROLES, Policy::add_cluster_role),
    (keys::ROLE_BINDINGS, Policy::add_role_binding),
    (
        keys::CLUSTER_ROLE_BINDINGS,
        Policy::add_cluster_role_binding,
    ),
];

impl Policy {
    /// The etcd roots of the four kinds, which the authorizer follows.
    pub fn roots() -> Vec<&'static str> {
        STORED.iter().map(|(root, _)| *root).collect()
    }

    /// The index of the stored RBAC objects, under their etcd keys.
    pub fn from_objects(objects: &Objects) -> Self {
        let mut policy = Self::default();
        for (key, object) in objects {
            if let Some((_, add)) = STORED
                .iter()
                .find(|(root, _)| key.starts_with(&keys::collection_prefix(root, None)))
            {
                add(&mut policy, object);
            }
        }
        policy
    }

    pub fn add_role(&mut self, object: &Value) {
        let (namespace, name) = name_of(object);
        self.roles.insert((namespace, name), rules_of(object));
    }

    pub fn add_cluster_role(&mut self, object: &Value) {
        let (_, name) = name_of(object);
        self.cluster_roles.insert(name, rules_of(object));
    }

    pub fn add_role_binding(&mut self, object: &Value) {
        if let Some(binding) = Binding::from_object(object) {
            self.role_bindings
                .entry(binding.namespace.clone())
                .or_default()
                .push(binding);
        }
    }

    pub fn add_cluster_role_binding(&mut self, object: &Value) {
        if let Some(mut binding) = Binding::from_object(object) {
            binding.namespace.clear();
            self.cluster_role_bindings.push(binding);
        }
    }

    /// The rules `role_ref` names, for a binding in `namespace` (empty for
    /// a ClusterRoleBinding); kube's `GetRoleReferenceRules`, with its
    /// not-found message.
    pub fn role_rules(&self, role_ref: &RoleRef, namespace: &str) -> Result<&[PolicyRule], String> {
        let found = match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(&(namespace.to_owned(), role_ref.name.clone())),
            "ClusterRole" => self.cluster_roles.get(&role_ref.name),
            other => return Err(format!("unsupported role reference kind: \"{other}\"")),
        };
        found.map(Vec::as_slice).ok_or_else(|| {
            format!(
                "{}.{RBAC_GROUP} \"{}\" not found",
                role_ref.kind.to_ascii_lowercase(),
                role_ref.name
            )
        })
    }

    /// Visits the rules that apply to `user` in `namespace` (cluster-wide
    /// ones first), with the binding and subject that grant each; stops
    /// when `visit` returns false. Roles that cannot be found are errors.
    fn visit_rules(
        &self,
        user: &User,
        namespace: &str,
        visit: &mut dyn FnMut(Visited<'_>) -> bool,
    ) {
        let local = match namespace {
            "" => None,
            namespace => self.role_bindings.get(namespace),
        };
        let bindings = self
            .cluster_role_bindings
            .iter()
            .chain(local.into_iter().flatten());
        for binding in bindings {
            let Some(subject) = binding.subject_for(user, namespace) else {
                continue;
            };
            match self.role_rules(&binding.role_ref, &binding.namespace) {
                Ok(rules) => {
                    for rule in rules {
                        if !visit(Ok((binding, subject, rule))) {
                            return;
                        }
                    }
                }
                Err(error) => {
                    if !visit(Err(error)) {
                        return;
                    }
                }
            }
        }
    }

    /// Every rule `user` holds in `namespace`, and the roles that could
    /// not be found (kube's `RulesFor`).
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules(user, namespace, &mut |visited| {
            match visited {
                Ok((_, _, rule)) => rules.push(rule.clone()),
                Err(error) => errors.push(error),
            }
            true
        });
        (rules, errors)
    }

    /// kube-apiserver's authorizer chain: the privileged group, then RBAC.
    pub fn authorize(&self, attributes: &Attributes) -> Decision {
        if attributes.user.in_group(SYSTEM_MASTERS) {
            return Decision::Allow(String::new());
        }
        let namespace = match &attributes.action {
            Action::Resource(info) => info.namespace.as_str(),
            Action::NonResource { .. } => "",
        };
        let mut allowed = None;
        let mut errors = Vec::new();
        self.visit_rules(&attributes.user, namespace, &mut |visited| match visited {
            Ok((binding, subject, rule)) if rule.allows(&attributes.action) => {
                allowed = Some(format!(
                    "RBAC: allowed by {} of {} \"{}\" to {}",
                    binding.describe(),
                    binding.role_ref.kind,
                    binding.role_ref.name,
                    subject.describe(&binding.namespace)
                ));
                false
            }
            Ok(_) => true,
            Err(error) => {
                errors.push(error);
                true
            }
        });
        match allowed {
            Some(reason) => Decision::Allow(reason),
            None if errors.is_empty() => Decision::Deny(String::new()),
            None if errors.len() == 1 => Decision::Deny(format!("RBAC: {}", errors[0])),
            None => Decision::Deny(format!("RBAC: [{}]", errors.join(", "))),
        }
    }
}

#[cfg(test)]
mod tests;
