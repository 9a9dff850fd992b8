//! IngressClasses: the parameters' scope defaulted to `Cluster`, the
//! controller a domain-prefixed path that an update may not change, and the
//! parameters reference checked as upstream does.

use serde_json::{Value, json};

use super::spec::validate_typed_reference;

use crate::validation::{FieldError, child, is_dns1123_label, is_dns1123_subdomain};

const MAX_CONTROLLER_BYTES: usize = 250;
const SCOPES: &[&str] = &["Cluster", "Namespace"];

pub fn default_parameters_scope(class: &mut Value) {
    let parameters = &mut class["spec"]["parameters"];
    if parameters.is_object() && parameters["scope"].is_null() {
        parameters["scope"] = json!("Cluster");
    }
}

pub fn validate(class: &Value) -> Vec<FieldError> {
    let mut errs = validate_controller(class["spec"]["controller"].as_str().unwrap_or_default());
    let parameters = &class["spec"]["parameters"];
    if !parameters.is_null() {
        errs.extend(validate_parameters(parameters, "spec.parameters"));
    }
    errs
}

pub fn validate_update(class: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let controller = &class["spec"]["controller"];
    if *controller != old["spec"]["controller"] {
        errs.push(FieldError::invalid(
            "spec.controller",
            controller.as_str().unwrap_or_default(),
            "field is immutable",
        ));
    }
    errs.extend(validate(class));
    errs
}

/// apimachinery's `IsDomainPrefixedPath`, at most 250 bytes.
fn validate_controller(controller: &str) -> Vec<FieldError> {
    let path = "spec.controller";
    if controller.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    let mut errs = Vec::new();
    if controller.len() > MAX_CONTROLLER_BYTES {
        errs.push(FieldError::too_long(path, MAX_CONTROLLER_BYTES));
    }
    let Some((host, rest)) = controller
        .split_once('/')
        .filter(|(host, rest)| !host.is_empty() && !rest.is_empty())
    else {
        errs.push(FieldError::invalid(
            path,
            controller,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return errs;
    };
    errs.extend(
        is_dns1123_subdomain(host)
            .into_iter()
            .map(|msg| FieldError::invalid(path, host, msg)),
    );
    let http_path_char = |c: char| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c);
    if !rest.chars().all(http_path_char) {
        errs.push(FieldError::invalid(
            path,
            rest,
            "Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
        ));
    }
    errs
}

fn validate_parameters(parameters: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = validate_typed_reference(parameters, path);
    let Some(scope) = parameters["scope"].as_str() else {
        errs.push(FieldError::required(child(path, "scope"), ""));
        return errs;
    };
    let namespace_path = child(path, "namespace");
    let namespace = parameters["namespace"].as_str();
    match (scope, namespace) {
        ("Namespace", None) => errs.push(FieldError::required(
            namespace_path,
            "`parameters.scope` is set to 'Namespace'",
        )),
        ("Namespace", Some(namespace)) => errs.extend(
            is_dns1123_label(namespace)
                .into_iter()
                .map(|msg| FieldError::invalid(&namespace_path, namespace, msg)),
        ),
        ("Cluster", Some(_)) => errs.push(FieldError::forbidden(
            namespace_path,
            "`parameters.scope` is set to 'Cluster'",
        )),
        ("Cluster", None) => {}
        (other, _) => errs.push(FieldError::not_supported(
            child(path, "scope"),
            other,
            SCOPES,
        )),
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    fn class(spec: Value) -> Value {
        let mut class = json!({ "metadata": { "name": "c" }, "spec": spec });
        default_parameters_scope(&mut class);
        class
    }

    #[test]
    fn the_controller_is_a_domain_prefixed_path() {
        let good = class(json!({ "controller": "skiff.io/ingress-controller" }));
        assert_eq!(texts(validate(&good)), Vec::<String>::new());
        assert_eq!(
            texts(validate(&class(json!({})))),
            ["spec.controller: Required value"]
        );
        assert_eq!(
            texts(validate(&class(json!({ "controller": "skiff" })))),
            [
                "spec.controller: Invalid value: \"skiff\": must be a domain-prefixed path (such as \"acme.io/foo\")"
            ]
        );
        assert_eq!(
            texts(validate(&class(json!({ "controller": "skiff.io/a b" })))),
            [
                "spec.controller: Invalid value: \"a b\": Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')"
            ]
        );
        let changed = class(json!({ "controller": "other.io/x" }));
        assert_eq!(
            texts(validate_update(&changed, &good)),
            ["spec.controller: Invalid value: \"other.io/x\": field is immutable"]
        );
    }

    #[test]
    fn parameters_are_scoped() {
        let cluster = class(
            json!({ "controller": "a.io/b", "parameters": { "kind": "Config", "name": "p" } }),
        );
        assert_eq!(cluster["spec"]["parameters"]["scope"], "Cluster");
        assert_eq!(texts(validate(&cluster)), Vec::<String>::new());
        let namespaced = class(json!({ "controller": "a.io/b",
            "parameters": { "kind": "Config", "name": "p", "scope": "Namespace" } }));
        assert_eq!(
            texts(validate(&namespaced)),
            ["spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
        );
        let odd = class(json!({ "controller": "a.io/b",
            "parameters": { "name": "p", "scope": "Global", "namespace": "x" } }));
        assert_eq!(
            texts(validate(&odd)),
            [
                "spec.parameters.kind: Required value",
                "spec.parameters.scope: Unsupported value: \"Global\": supported values: \"Cluster\", \"Namespace\"",
            ]
        );
        let forbidden = class(json!({ "controller": "a.io/b",
            "parameters": { "kind": "C", "name": "p", "scope": "Cluster", "namespace": "x" } }));
        assert_eq!(
            texts(validate(&forbidden)),
            ["spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]
        );
    }
}
