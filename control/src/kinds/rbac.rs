//! The four rbac.authorization.k8s.io/v1 kinds: defaulted and validated as
//! kube-apiserver's `pkg/apis/rbac/validation` does, a binding's `roleRef`
//! fixed once created. Who may write them (the escalation checks) is
//! authorization's business (`authz::escalation`), run by the verbs.

use serde_json::{Value, json};

use super::env::Env;
use super::refusal::Refusal;
use super::strategy::Strategy;
use crate::authz::RBAC_GROUP;
use crate::validation::{
    FieldError, Rendered, child, go_quote, go_string_slice, index, is_valid_path_segment_name,
};

/// A Role (`namespaced`) or ClusterRole.
#[derive(Debug)]
pub struct RoleStrategy {
    pub namespaced: bool,
}

/// A RoleBinding (`namespaced`) or ClusterRoleBinding.
#[derive(Debug)]
pub struct BindingStrategy {
    pub namespaced: bool,
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn go_list(values: &[String]) -> Rendered {
    Rendered(go_string_slice(values))
}

/// kube's `ValidatePolicyRule`.
fn validate_rule(rule: &Value, namespaced: bool, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let field = |name: &str| strings(&rule[name]);
    if field("verbs").is_empty() {
        errors.push(FieldError::required(
            child(path, "verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = field("nonResourceURLs");
    if !urls.is_empty() {
        let urls_path = child(path, "nonResourceURLs");
        if namespaced {
            errors.push(FieldError::invalid(
                &urls_path,
                go_list(&urls),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if ["apiGroups", "resources", "resourceNames"]
            .iter()
            .any(|name| !field(name).is_empty())
        {
            errors.push(FieldError::invalid(
                &urls_path,
                go_list(&urls),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return errors;
    }
    if field("apiGroups").is_empty() {
        errors.push(FieldError::required(
            child(path, "apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if field("resources").is_empty() {
        errors.push(FieldError::required(
            child(path, "resources"),
            "resource rules must supply at least one resource",
        ));
    }
    errors
}

impl RoleStrategy {
    fn check(&self, role: &Value) -> Result<(), Refusal> {
        let mut errors = Vec::new();
        for (i, rule) in role["rules"].as_array().into_iter().flatten().enumerate() {
            errors.extend(validate_rule(rule, self.namespaced, &index("rules", i)));
        }
        let aggregation = &role["aggregationRule"];
        if !self.namespaced && !aggregation.is_null() {
            let selectors = aggregation["clusterRoleSelectors"].as_array();
            if selectors.is_none_or(Vec::is_empty) {
                errors.push(FieldError::required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                ));
            }
        }
        Refusal::unless_valid(errors)
    }
}

impl Strategy for RoleStrategy {
    fn validate(&self, _env: &Env, role: &Value) -> Result<(), Refusal> {
        self.check(role)
    }

    fn validate_update(&self, _env: &Env, role: &Value, _old: &Value) -> Result<(), Refusal> {
        self.check(role)
    }
}

/// The v1 defaults: a roleRef's group, and each subject's by its kind.
fn default_binding(binding: &mut Value) {
    if binding["roleRef"]["apiGroup"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
        && binding["roleRef"].is_object()
    {
        binding["roleRef"]["apiGroup"] = json!(RBAC_GROUP);
    }
    for subject in binding["subjects"].as_array_mut().into_iter().flatten() {
        if subject["apiGroup"].as_str().unwrap_or_default().is_empty()
            && matches!(subject["kind"].as_str(), Some("User" | "Group"))
        {
            subject["apiGroup"] = json!(RBAC_GROUP);
        }
    }
}

/// kube's `ValidateRoleBindingSubject`.
fn validate_subject(subject: &Value, namespaced: bool, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let text = |name: &str| subject[name].as_str().unwrap_or_default();
    let name = text("name");
    if name.is_empty() {
        errors.push(FieldError::required(child(path, "name"), ""));
    }
    let group = text("apiGroup");
    match text("kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for message in crate::validation::is_dns1123_subdomain(name) {
                    errors.push(FieldError::invalid(child(path, "name"), name, message));
                }
            }
            if !group.is_empty() {
                errors.push(FieldError::not_supported(
                    child(path, "apiGroup"),
                    group,
                    &[""],
                ));
            }
            if !namespaced && text("namespace").is_empty() {
                errors.push(FieldError::required(child(path, "namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != RBAC_GROUP {
                errors.push(FieldError::not_supported(
                    child(path, "apiGroup"),
                    group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => errors.push(FieldError::not_supported(
            child(path, "kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
    errors
}

impl BindingStrategy {
    fn check(&self, binding: &Value) -> Result<(), Refusal> {
        let mut errors = Vec::new();
        let role_ref = &binding["roleRef"];
        let text = |name: &str| role_ref[name].as_str().unwrap_or_default();
        if text("apiGroup") != RBAC_GROUP {
            errors.push(FieldError::not_supported(
                "roleRef.apiGroup",
                text("apiGroup"),
                &[RBAC_GROUP],
            ));
        }
        if !self.role_kinds().contains(&text("kind")) {
            errors.push(FieldError::not_supported(
                "roleRef.kind",
                text("kind"),
                self.role_kinds(),
            ));
        }
        let name = text("name");
        if name.is_empty() {
            errors.push(FieldError::required("roleRef.name", ""));
        }
        for message in is_valid_path_segment_name(name, false) {
            errors.push(FieldError::invalid("roleRef.name", name, message));
        }
        for (i, subject) in binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            errors.extend(validate_subject(
                subject,
                self.namespaced,
                &index("subjects", i),
            ));
        }
        Refusal::unless_valid(errors)
    }

    /// A binding's `roleRef` never changes.
    fn check_update(&self, binding: &Value, old: &Value) -> Result<(), Refusal> {
        if binding["roleRef"] != old["roleRef"] {
            return Err(Refusal::Invalid(vec![FieldError::invalid(
                "roleRef",
                role_ref_value(&binding["roleRef"]),
                "cannot change roleRef",
            )]));
        }
        self.check(binding)
    }

    fn role_kinds(&self) -> &'static [&'static str] {
        if self.namespaced {
            &["Role", "ClusterRole"]
        } else {
            &["ClusterRole"]
        }
    }
}

/// A roleRef as Go's `%#v` prints it in kube's message.
fn role_ref_value(role_ref: &Value) -> Rendered {
    let text = |name: &str| go_quote(role_ref[name].as_str().unwrap_or_default());
    Rendered(format!(
        "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
        text("apiGroup"),
        text("kind"),
        text("name")
    ))
}

impl Strategy for BindingStrategy {
    fn prepare_for_create(&self, binding: &mut Value) {
        default_binding(binding);
    }

    fn prepare_for_update(&self, binding: &mut Value, _old: &Value) {
        default_binding(binding);
    }

    fn validate(&self, _env: &Env, binding: &Value) -> Result<(), Refusal> {
        self.check(binding)
    }

    fn validate_update(&self, _env: &Env, binding: &Value, old: &Value) -> Result<(), Refusal> {
        self.check_update(binding, old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(result: Result<(), Refusal>) -> Vec<String> {
        match result {
            Ok(()) => Vec::new(),
            Err(Refusal::Invalid(errors)) => errors.iter().map(ToString::to_string).collect(),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn roles_are_validated_as_kube_validates_them() {
        let role = RoleStrategy { namespaced: true };
        let cluster_role = RoleStrategy { namespaced: false };
        let good =
            json!({ "rules": [{ "verbs": ["get"], "apiGroups": [""], "resources": ["pods"] }] });
        assert!(errors(role.check(&good)).is_empty());
        let bad = json!({ "rules": [
            { "apiGroups": [""], "resources": ["pods"] },
            { "verbs": ["get"] },
            { "verbs": ["get"], "nonResourceURLs": ["/metrics"], "resources": ["pods"] },
        ]});
        assert_eq!(
            errors(role.check(&bad)),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].resources: Required value: resource rules must supply at least one resource",
                "rules[2].nonResourceURLs: Invalid value: []string{\"/metrics\"}: namespaced rules cannot apply to non-resource URLs",
                "rules[2].nonResourceURLs: Invalid value: []string{\"/metrics\"}: rules cannot apply to both regular resources and non-resource URLs",
            ]
        );
        let urls = json!({ "rules": [{ "verbs": ["get"], "nonResourceURLs": ["/metrics"] }] });
        assert!(errors(cluster_role.check(&urls)).is_empty());
        let empty_aggregation = json!({ "aggregationRule": {} });
        assert_eq!(
            errors(cluster_role.check(&empty_aggregation)),
            [
                "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
            ]
        );
    }

    #[test]
    fn bindings_are_defaulted_validated_and_keep_their_role_ref() {
        let binding = BindingStrategy { namespaced: true };
        let cluster_binding = BindingStrategy { namespaced: false };
        let mut good = json!({
            "roleRef": { "kind": "ClusterRole", "name": "view" },
            "subjects": [
                { "kind": "User", "name": "bob" },
                { "kind": "ServiceAccount", "name": "robot" },
            ],
        });
        binding.prepare_for_create(&mut good);
        assert_eq!(good["roleRef"]["apiGroup"], RBAC_GROUP);
        assert_eq!(good["subjects"][0]["apiGroup"], RBAC_GROUP);
        assert!(good["subjects"][1]["apiGroup"].is_null());
        assert!(errors(binding.check(&good)).is_empty());
        assert_eq!(
            errors(cluster_binding.check(&good)),
            ["subjects[1].namespace: Required value"]
        );
        let bad = json!({
            "roleRef": { "apiGroup": "x", "kind": "Role", "name": "" },
            "subjects": [{ "kind": "Robot", "name": "r" }, { "kind": "Group", "apiGroup": "y" }],
        });
        assert_eq!(
            errors(cluster_binding.check(&bad)),
            [
                "roleRef.apiGroup: Unsupported value: \"x\": supported values: \"rbac.authorization.k8s.io\"",
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "roleRef.name: Required value",
                "subjects[0].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
                "subjects[1].name: Required value",
                "subjects[1].apiGroup: Unsupported value: \"y\": supported values: \"rbac.authorization.k8s.io\"",
            ]
        );
        let mut changed = good.clone();
        changed["roleRef"]["name"] = json!("edit");
        assert_eq!(
            errors(binding.check_update(&changed, &good)),
            [
                "roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"
            ]
        );
    }
}
