//! Rules the kinds that keep pods from a template share (Deployments,
//! ReplicationControllers): counts that may not be negative, a template
//! its selector matches.

use serde_json::{Value, json};

use super::pod_validation;
use super::refusal::Refusal;
use crate::validation::{FieldError, Rendered, go_quote};

/// The pod rules for `spec.template`: a pod made from it is validated and
/// its errors named under the template (a template has no name of its
/// own).
pub fn template_errors(object: &Value) -> Result<Vec<FieldError>, Refusal> {
    let template = &object["spec"]["template"];
    let mut metadata = template["metadata"].clone();
    if !metadata.is_object() {
        metadata = json!({});
    }
    metadata["name"] = json!("template");
    let pod = json!({ "metadata": metadata, "spec": template["spec"] });
    Ok(pod_validation::validate(&pod)?
        .into_iter()
        .filter(|error| !error.field.starts_with("metadata.name"))
        .map(|mut error| {
            error.field = format!("spec.template.{}", error.field);
            error
        })
        .collect())
}

/// kube-apiserver's `ValidateNonnegativeField` of the number at `path`
/// (`spec.replicas`) when it is set.
pub fn nonnegative(object: &Value, path: &str) -> Option<FieldError> {
    let value = path
        .split('.')
        .fold(object, |value, key| &value[key])
        .as_i64()?;
    (value < 0).then(|| FieldError::invalid(path, value, "must be greater than or equal to 0"))
}

/// The error of template labels the selector does not match.
pub fn selector_mismatch(labels: &Value) -> FieldError {
    FieldError::invalid(
        "spec.template.metadata.labels",
        Rendered(go_string_map(labels)),
        "`selector` does not match template `labels`",
    )
}

/// A `map[string]string` as Go's `%#v` prints it (keys sorted).
fn go_string_map(map: &Value) -> String {
    let pairs: Vec<String> = map
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(key, value)| {
                    format!(
                        "{}:{}",
                        go_quote(key),
                        go_quote(value.as_str().unwrap_or_default())
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_errors_are_named_under_the_template() {
        let object = json!({ "spec": { "template": { "spec": { "containers": [] } } } });
        let errors: Vec<String> = template_errors(&object)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors, ["spec.template.spec.containers: Required value"]);
    }

    #[test]
    fn errors_read_as_kube_apiservers() {
        let object = json!({ "spec": { "replicas": -1, "minReadySeconds": 0 } });
        assert_eq!(
            nonnegative(&object, "spec.replicas").unwrap().to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert!(nonnegative(&object, "spec.minReadySeconds").is_none());
        assert_eq!(
            selector_mismatch(&json!({ "b": "2", "a": "1" })).to_string(),
            "spec.template.metadata.labels: Invalid value: map[string]string{\"a\":\"1\", \"b\":\"2\"}: `selector` does not match template `labels`"
        );
    }
}
