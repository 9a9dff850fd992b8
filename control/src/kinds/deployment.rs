//! Deployments: kube-apiserver's apps/v1 defaults (one replica,
//! RollingUpdate 25%/25%, a history of 10 revisions, a 600 s progress
//! deadline) and the validation of the fields the controller acts on.

use serde_json::{Value, json};

use super::env::Env;
use super::refusal::Refusal;
use super::strategy::{Strategy, Subresource};
use super::workload::{
    nonnegative, template_errors, validate_selector, validate_selector_matches_template,
};
use crate::validation::FieldError;

#[derive(Debug)]
pub struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status, Subresource::Scale]
    }

    fn prepare_for_create(&self, deployment: &mut Value) {
        default(deployment);
    }

    fn prepare_for_update(&self, deployment: &mut Value, _old: &Value) {
        default(deployment);
    }

    fn validate(&self, _env: &Env, deployment: &Value) -> Result<(), Refusal> {
        let mut errors = validate(deployment);
        errors.extend(template_errors(deployment)?);
        Refusal::unless_valid(errors)
    }

    fn validate_update(&self, env: &Env, deployment: &Value, _old: &Value) -> Result<(), Refusal> {
        self.validate(env, deployment)
    }
}

/// `SetDefaults_Deployment` of apps/v1.
fn default(deployment: &mut Value) {
    let Some(spec) = deployment.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.entry("replicas").or_insert(json!(1));
    spec.entry("revisionHistoryLimit").or_insert(json!(10));
    spec.entry("progressDeadlineSeconds").or_insert(json!(600));
    let strategy = spec.entry("strategy").or_insert(json!({}));
    if strategy["type"].is_null() {
        strategy["type"] = json!("RollingUpdate");
    }
    if strategy["type"] == "RollingUpdate" {
        let rolling = &mut strategy["rollingUpdate"];
        if !rolling.is_object() {
            *rolling = json!({});
        }
        for field in ["maxUnavailable", "maxSurge"] {
            if rolling[field].is_null() {
                rolling[field] = json!("25%");
            }
        }
    }
}

/// `ValidateDeploymentSpec`, for the fields skiff's controller acts on.
fn validate(deployment: &Value) -> Vec<FieldError> {
    let spec = &deployment["spec"];
    let mut errors: Vec<FieldError> = [
        "spec.replicas",
        "spec.minReadySeconds",
        "spec.revisionHistoryLimit",
        "spec.progressDeadlineSeconds",
    ]
    .into_iter()
    .filter_map(|path| nonnegative(deployment, path))
    .collect();
    errors.extend(validate_selector(spec, "spec", "deployment"));
    errors.extend(validate_selector_matches_template(spec, "spec"));
    if let (Some(deadline), Some(min_ready)) = (
        spec["progressDeadlineSeconds"].as_i64(),
        spec["minReadySeconds"].as_i64(),
    ) && deadline <= min_ready
        && deadline != i64::from(i32::MAX)
    {
        errors.push(FieldError::invalid(
            "spec.progressDeadlineSeconds",
            deadline,
            "must be greater than minReadySeconds",
        ));
    }
    match spec["strategy"]["type"].as_str() {
        Some("RollingUpdate") => {}
        Some("Recreate") if spec["strategy"]["rollingUpdate"].is_null() => {}
        Some("Recreate") => errors.push(FieldError::forbidden(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        other => errors.push(FieldError::not_supported(
            "spec.strategy.type",
            other.unwrap_or_default(),
            &["Recreate", "RollingUpdate"],
        )),
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(spec: Value) -> Value {
        let mut deployment = json!({
            "metadata": { "name": "web" },
            "spec": {
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } } },
            },
        });
        for (key, value) in spec.as_object().unwrap() {
            deployment["spec"][key] = value.clone();
        }
        default(&mut deployment);
        deployment
    }

    #[test]
    fn defaults_are_kube_apiservers() {
        let spec = &deployment(json!({}))["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["strategy"]["type"], "RollingUpdate");
        assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let recreate = deployment(json!({ "strategy": { "type": "Recreate" } }));
        assert!(recreate["spec"]["strategy"]["rollingUpdate"].is_null());
        assert!(validate(&recreate).is_empty());
    }

    #[test]
    fn bad_specs_are_refused_naming_the_field() {
        let fields = |spec: Value| -> Vec<String> {
            validate(&deployment(spec))
                .into_iter()
                .map(|error| error.to_string())
                .collect()
        };
        assert_eq!(
            fields(json!({ "revisionHistoryLimit": -1 })),
            ["spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            fields(json!({ "minReadySeconds": 30, "progressDeadlineSeconds": 10 })),
            [
                "spec.progressDeadlineSeconds: Invalid value: 10: must be greater than minReadySeconds"
            ]
        );
        assert_eq!(
            fields(json!({ "selector": { "matchLabels": { "app": "db" } } })),
            [
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`"
            ]
        );
    }
}
