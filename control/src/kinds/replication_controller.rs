//! ReplicationControllers (core v1): the ReplicaSet's predecessor, whose
//! selector is a plain label map. kube-apiserver's defaults (selector and
//! labels from the template's labels, one replica) and validation.

use serde_json::{Value, json};

use super::env::Env;
use super::refusal::Refusal;
use super::strategy::{Strategy, Subresource};
use super::workload::{nonnegative, selector_mismatch, template_errors};
use crate::controllers::meta;
use crate::validation::FieldError;

#[derive(Debug)]
pub struct ReplicationControllerStrategy;

impl Strategy for ReplicationControllerStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status, Subresource::Scale]
    }

    fn prepare_for_create(&self, controller: &mut Value) {
        default(controller);
    }

    fn prepare_for_update(&self, controller: &mut Value, _old: &Value) {
        default(controller);
    }

    fn validate(&self, _env: &Env, controller: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(validate(controller)?)
    }

    fn validate_update(&self, env: &Env, controller: &Value, _old: &Value) -> Result<(), Refusal> {
        self.validate(env, controller)
    }
}

fn empty(map: &Value) -> bool {
    map.as_object().is_none_or(|map| map.is_empty())
}

/// `SetDefaults_ReplicationController`.
fn default(controller: &mut Value) {
    if !controller["spec"].is_object() {
        return;
    }
    let labels = controller["spec"]["template"]["metadata"]["labels"].clone();
    if labels.is_object() {
        if empty(&controller["spec"]["selector"]) {
            controller["spec"]["selector"] = labels.clone();
        }
        if empty(&controller["metadata"]["labels"]) {
            controller["metadata"]["labels"] = labels;
        }
    }
    if controller["spec"]["replicas"].is_null() {
        controller["spec"]["replicas"] = json!(1);
    }
}

/// `ValidateReplicationControllerSpec`.
fn validate(controller: &Value) -> Result<Vec<FieldError>, Refusal> {
    let spec = &controller["spec"];
    let mut errors: Vec<FieldError> = ["spec.minReadySeconds", "spec.replicas"]
        .into_iter()
        .filter_map(|path| nonnegative(controller, path))
        .collect();
    let selector = &spec["selector"];
    if empty(selector) {
        errors.push(FieldError::required("spec.selector", ""));
    }
    let template = &spec["template"];
    if template.is_null() {
        errors.push(FieldError::required("spec.template", ""));
        return Ok(errors);
    }
    let labels = &template["metadata"]["labels"];
    if !empty(selector) && !meta::map_matches(selector, labels) {
        errors.push(selector_mismatch("spec", labels));
    }
    errors.extend(template_errors(controller)?);
    if let Some(policy) = template["spec"]["restartPolicy"].as_str()
        && policy != "Always"
    {
        errors.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    if let Some(deadline) = template["spec"]["activeDeadlineSeconds"].as_i64() {
        errors.push(FieldError::invalid(
            "spec.template.spec.activeDeadlineSeconds",
            deadline,
            "activeDeadlineSeconds in ReplicationController is not Supported",
        ));
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(spec: Value) -> Value {
        let mut controller = json!({ "metadata": { "name": "redis" }, "spec": spec });
        default(&mut controller);
        controller
    }

    fn template(labels: Value) -> Value {
        json!({
            "metadata": { "labels": labels },
            "spec": { "containers": [{ "name": "redis", "image": "redis" }] },
        })
    }

    fn errors(spec: Value) -> Vec<String> {
        validate(&controller(spec))
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn selector_and_labels_default_from_the_template() {
        let controller = controller(json!({ "template": template(json!({ "app": "redis" })) }));
        assert_eq!(controller["spec"]["selector"], json!({ "app": "redis" }));
        assert_eq!(controller["metadata"]["labels"], json!({ "app": "redis" }));
        assert_eq!(controller["spec"]["replicas"], 1);
        assert!(validate(&controller).unwrap().is_empty());
    }

    #[test]
    fn bad_specs_are_refused_naming_the_field() {
        assert_eq!(
            errors(json!({ "replicas": -1, "template": template(json!({ "app": "redis" })) })),
            ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            errors(
                json!({ "selector": { "app": "db" }, "template": template(json!({ "app": "redis" })) })
            ),
            [
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"redis\"}: `selector` does not match template `labels`"
            ]
        );
        assert_eq!(
            errors(json!({ "selector": { "app": "db" } })),
            ["spec.template: Required value"]
        );
    }
}
