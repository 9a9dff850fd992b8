//! StatefulSets: kube-apiserver's defaults (OrderedReady, RollingUpdate
//! from partition 0, ten revisions kept, claims retained, one replica), its
//! validation, and the update rule: only the replicas, ordinals, template,
//! update strategy, claim retention, minReadySeconds and revision history
//! may change. A status and a `/scale` subresource over `spec.replicas`.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::env::Env;
use super::pod_validation::validate_label_name;
use super::refusal::Refusal;
use super::strategy::{Strategy, Subresource};
use super::workload::{validate_selector, validate_selector_matches_template};
use crate::validation::{FieldError, Rendered, go_quote, index, is_dns1035_label};

const POD_MANAGEMENT: &[&str] = &["OrderedReady", "Parallel"];
const RETENTION: &[&str] = &["Retain", "Delete"];
const NONNEGATIVE: &str = "must be greater than or equal to 0";
/// The spec fields an update may change; the rest are fixed at creation.
const MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];
const IMMUTABLE_SPEC: &str = "updates to statefulset spec for fields other than 'replicas', \
     'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', \
     'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

#[derive(Debug)]
pub struct StatefulSetStrategy;

impl Strategy for StatefulSetStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status, Subresource::Scale]
    }

    fn prepare_for_create(&self, set: &mut Value) {
        default_spec(&mut set["spec"]);
    }

    fn prepare_for_update(&self, set: &mut Value, _old: &Value) {
        default_spec(&mut set["spec"]);
    }

    fn validate(&self, _env: &Env, set: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(validate_spec(&set["spec"]))
    }

    fn validate_update(&self, _env: &Env, set: &Value, old: &Value) -> Result<(), Refusal> {
        let mut errs = validate_spec(&set["spec"]);
        if fixed_part(&set["spec"]) != fixed_part(&old["spec"]) {
            errs.push(FieldError::forbidden("spec", IMMUTABLE_SPEC));
        }
        Refusal::unless_valid(errs)
    }
}

/// `SetDefaults_StatefulSet`, and the template's restart policy.
fn default_spec(spec: &mut Value) {
    if !spec.is_object() {
        *spec = json!({});
    }
    let mut default = |field: &str, value: Value| {
        if spec[field].is_null() {
            spec[field] = value;
        }
    };
    default("replicas", json!(1));
    default("podManagementPolicy", json!("OrderedReady"));
    default("revisionHistoryLimit", json!(10));
    default("updateStrategy", json!({ "type": "RollingUpdate" }));
    default("persistentVolumeClaimRetentionPolicy", json!({}));
    let strategy = &mut spec["updateStrategy"];
    if strategy["type"] == "RollingUpdate" {
        if strategy["rollingUpdate"].is_null() {
            strategy["rollingUpdate"] = json!({});
        }
        if strategy["rollingUpdate"]["partition"].is_null() {
            strategy["rollingUpdate"]["partition"] = json!(0);
        }
    }
    let retention = &mut spec["persistentVolumeClaimRetentionPolicy"];
    for field in ["whenDeleted", "whenScaled"] {
        if retention[field].is_null() {
            retention[field] = json!("Retain");
        }
    }
    if spec["template"]["spec"]["restartPolicy"].is_null() {
        spec["template"]["spec"]["restartPolicy"] = json!("Always");
    }
}

/// The spec without the fields an update may change.
fn fixed_part(spec: &Value) -> Value {
    let mut fixed = spec.clone();
    if let Some(fields) = fixed.as_object_mut() {
        fields.retain(|field, _| !MUTABLE.contains(&field.as_str()));
    }
    fixed
}

fn validate_spec(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match spec["podManagementPolicy"].as_str().unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        policy if POD_MANAGEMENT.contains(&policy) => {}
        policy => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            policy,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    validate_update_strategy(&spec["updateStrategy"], &mut errs);
    let retention = &spec["persistentVolumeClaimRetentionPolicy"];
    for field in ["whenDeleted", "whenScaled"] {
        let value = retention[field].as_str().unwrap_or_default();
        if !RETENTION.contains(&value) {
            errs.push(FieldError::not_supported(
                format!("spec.persistentVolumeClaimRetentionPolicy.{field}"),
                value,
                RETENTION,
            ));
        }
    }
    for (field, path) in [
        ("replicas", "spec.replicas"),
        ("minReadySeconds", "spec.minReadySeconds"),
    ] {
        nonnegative(&spec[field], path, &mut errs);
    }
    nonnegative(&spec["ordinals"]["start"], "spec.ordinals.start", &mut errs);
    if let Some(service) = spec["serviceName"].as_str().filter(|name| !name.is_empty()) {
        errs.extend(
            is_dns1035_label(service)
                .into_iter()
                .map(|message| FieldError::invalid("spec.serviceName", service, message)),
        );
    }
    let selector_errs = validate_selector(spec, "spec", "statefulset");
    let selector_ok = selector_errs.is_empty();
    errs.extend(selector_errs);
    if selector_ok {
        errs.extend(validate_selector_matches_template(spec, "spec"));
    }
    let pod = &spec["template"]["spec"];
    if let Some(policy) = pod["restartPolicy"].as_str().filter(|p| *p != "Always") {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            policy,
            &["Always"],
        ));
    }
    if !pod["activeDeadlineSeconds"].is_null() {
        errs.push(FieldError::forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        ));
    }
    validate_claim_templates(&spec["volumeClaimTemplates"], &mut errs);
    errs
}

fn nonnegative(value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(number) = value.as_i64().filter(|n| *n < 0) {
        errs.push(FieldError::invalid(path, number, NONNEGATIVE));
    }
}

fn validate_update_strategy(strategy: &Value, errs: &mut Vec<FieldError>) {
    let rolling = &strategy["rollingUpdate"];
    match strategy["type"].as_str().unwrap_or_default() {
        "" => errs.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" if !rolling.is_null() => errs.push(FieldError::invalid(
            "spec.updateStrategy.rollingUpdate",
            Rendered(go_rolling_update(rolling)),
            "only allowed for updateStrategy 'RollingUpdate'",
        )),
        "OnDelete" => {}
        "RollingUpdate" => {
            nonnegative(
                &rolling["partition"],
                "spec.updateStrategy.rollingUpdate.partition",
                errs,
            );
            // The MaxUnavailableStatefulSet feature: skiff replaces one pod
            // at a time and says so rather than ignore the field.
            if !rolling["maxUnavailable"].is_null() {
                errs.push(FieldError::forbidden(
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    "not supported: pods are updated one at a time",
                ));
            }
        }
        kind => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            Rendered(format!(
                "apps.StatefulSetUpdateStrategy{{Type:{}, RollingUpdate:{}}}",
                go_quote(kind),
                go_rolling_update(rolling)
            )),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
}

/// `*apps.RollingUpdateStatefulSetStrategy` as Go's `%#v` prints it.
fn go_rolling_update(rolling: &Value) -> String {
    if rolling.is_null() {
        return "(*apps.RollingUpdateStatefulSetStrategy)(nil)".to_owned();
    }
    format!(
        "apps.RollingUpdateStatefulSetStrategy{{Partition:{}, MaxUnavailable:(*intstr.IntOrString)(nil)}}",
        rolling["partition"].as_i64().unwrap_or(0)
    )
}

/// Each claim template's name becomes a pod volume's name (a DNS-1123
/// label) and the prefix of its claims' names, so it is required, valid
/// and unique.
fn validate_claim_templates(templates: &Value, errs: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (i, template) in templates.as_array().into_iter().flatten().enumerate() {
        validate_label_name(
            template["metadata"]["name"].as_str().unwrap_or_default(),
            &format!("{}.metadata.name", index("spec.volumeClaimTemplates", i)),
            &mut seen,
            errs,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(spec: Value) -> Value {
        let mut set = json!({
            "metadata": { "name": "web", "namespace": "default" },
            "spec": spec,
        });
        default_spec(&mut set["spec"]);
        set
    }

    fn valid_spec() -> Value {
        json!({
            "serviceName": "web",
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "c", "image": "i" }] },
            },
        })
    }

    fn messages(set: &Value) -> Vec<String> {
        validate_spec(&set["spec"])
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn defaults_are_kube_apiservers() {
        let set = set(valid_spec());
        let spec = &set["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["updateStrategy"],
            json!({ "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } })
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({ "whenDeleted": "Retain", "whenScaled": "Retain" })
        );
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert!(messages(&set).is_empty());
        let on_delete = self::set(json!({ "updateStrategy": { "type": "OnDelete" } }));
        assert!(on_delete["spec"]["updateStrategy"]["rollingUpdate"].is_null());
    }

    #[test]
    fn bad_specs_are_named() {
        let mut spec = valid_spec();
        spec["selector"] = json!({ "matchLabels": { "app": "other" } });
        spec["replicas"] = json!(-1);
        spec["podManagementPolicy"] = json!("Random");
        spec["updateStrategy"] = json!({ "type": "Sometimes" });
        spec["template"]["spec"]["restartPolicy"] = json!("Never");
        spec["volumeClaimTemplates"] = json!([
            { "metadata": { "name": "data" } },
            { "metadata": { "name": "data" } },
            { "metadata": {} },
        ]);
        let messages = messages(&set(spec));
        assert_eq!(
            messages,
            [
                "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
                "spec.updateStrategy: Invalid value: apps.StatefulSetUpdateStrategy{Type:\"Sometimes\", \
                 RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}: must be 'RollingUpdate' or 'OnDelete'",
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"web\"}: \
                 `selector` does not match template `labels`",
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.volumeClaimTemplates[1].metadata.name: Duplicate value: \"data\"",
                "spec.volumeClaimTemplates[2].metadata.name: Required value",
            ]
        );
        let mut spec = valid_spec();
        spec["updateStrategy"] =
            json!({ "type": "RollingUpdate", "rollingUpdate": { "partition": -2 } });
        assert_eq!(
            self::messages(&set(spec)),
            [
                "spec.updateStrategy.rollingUpdate.partition: Invalid value: -2: must be greater than or equal to 0"
            ]
        );
    }

    #[test]
    fn only_the_mutable_fields_change() {
        let old = set(valid_spec());
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("j");
        new["spec"]["updateStrategy"] = json!({ "type": "OnDelete" });
        assert_eq!(fixed_part(&new["spec"]), fixed_part(&old["spec"]));
        new["spec"]["serviceName"] = json!("other");
        assert_ne!(fixed_part(&new["spec"]), fixed_part(&old["spec"]));
        assert_eq!(
            FieldError::forbidden("spec", IMMUTABLE_SPEC).to_string(),
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', \
             'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' \
             and 'minReadySeconds' are forbidden"
        );
    }
}
