//! Jobs: kube-apiserver's defaults (one pod to completion, backoffLimit 6,
//! NonIndexed, not suspended), the selector it generates from the uid
//! unless `manualSelector`, and its validation, including what the job
//! controller cannot act on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};

use crate::controllers::meta;
use crate::kinds::refusal::Refusal;
use crate::kinds::workload::validate_selector_matches_template;
use crate::validation::{
    FieldError, Rendered, child, index, is_dns1123_label, is_qualified_name,
    validate_label_selector,
};

/// The label the generated selector matches: the job's uid.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The labels older clients select on, set alongside.
const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
const LEGACY_JOB_NAME_LABEL: &str = "job-name";

const MAX_INDEXED_PARALLELISM: i64 = 100_000;
const MAX_RULES: usize = 20;
const MAX_EXIT_CODES: usize = 255;
const MAX_CONDITION_PATTERNS: usize = 20;
/// The only controller of Jobs (`spec.managedBy`) skiff runs.
const JOB_CONTROLLER: &str = "kubernetes.io/job-controller";

/// Defaults of a Job's spec, as `SetDefaults_Job`.
pub fn default_spec(spec: &mut Value) {
    if spec["completions"].is_null() && spec["parallelism"].is_null() {
        spec["completions"] = json!(1);
    }
    if spec["parallelism"].is_null() {
        spec["parallelism"] = json!(1);
    }
    for (field, value) in [
        ("backoffLimit", json!(6)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
        ("manualSelector", json!(false)),
    ] {
        if spec[field].is_null() {
            spec[field] = value;
        }
    }
    if spec["podReplacementPolicy"].is_null() {
        // A pod failure policy needs the failed pod's final state.
        let policy = if spec["podFailurePolicy"].is_null() {
            "TerminatingOrFailed"
        } else {
            "Failed"
        };
        spec["podReplacementPolicy"] = json!(policy);
    }
}

/// The selector and template labels kube-apiserver generates from the
/// job's uid and name unless `spec.manualSelector` is true.
pub fn generate_selector(job: &mut Value) {
    if job["spec"]["manualSelector"].as_bool() == Some(true) {
        return;
    }
    let uid = meta::uid(job).to_owned();
    let name = meta::name(job).to_owned();
    if job["spec"]["selector"].is_null() {
        job["spec"]["selector"] = json!({ "matchLabels": { CONTROLLER_UID_LABEL: uid } });
    }
    let template = &mut job["spec"]["template"];
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    let labels = &mut template["metadata"]["labels"];
    for (key, value) in [
        (CONTROLLER_UID_LABEL, &uid),
        (JOB_NAME_LABEL, &name),
        (LEGACY_CONTROLLER_UID_LABEL, &uid),
        (LEGACY_JOB_NAME_LABEL, &name),
    ] {
        if labels[key].is_null() {
            labels[key] = json!(value);
        }
    }
}

pub fn validate(job: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = validate_generated_selector(job);
    let spec = &job["spec"];
    errs.extend(validate_spec(spec, "spec"));
    errs.extend(validate_selector(spec)?);
    if spec["completionMode"] == "Indexed"
        && let Some(completions) = spec["completions"].as_i64().filter(|&c| c > 0)
    {
        // Pods are named `<job>-<index>` for their hostname.
        let hostname = format!("{}-{}", meta::name(job), completions - 1);
        if !is_dns1123_label(&hostname).is_empty() {
            errs.push(FieldError::invalid(
                "metadata.name",
                meta::name(job),
                format!("will not able to create pod with invalid DNS label: {hostname}"),
            ));
        }
    }
    Ok(errs)
}

/// What an update may not change, then everything [`validate`] checks.
pub fn validate_update(job: &Value, old: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = validate(job)?;
    for field in ["completions", "selector", "template", "completionMode"] {
        let new = &job["spec"][field];
        if *new != old["spec"][field] {
            errs.push(FieldError::invalid(
                child("spec", field),
                Rendered(new.to_string()),
                "field is immutable",
            ));
        }
    }
    Ok(errs)
}

/// With a generated selector, the template carries the job's uid and name.
fn validate_generated_selector(job: &Value) -> Vec<FieldError> {
    let spec = &job["spec"];
    if spec["manualSelector"].as_bool() == Some(true) || spec["selector"].is_null() {
        return Vec::new();
    }
    let labels = &spec["template"]["metadata"]["labels"];
    let path = "spec.template.metadata.labels";
    let mut errs = Vec::new();
    for (key, wanted) in [
        (CONTROLLER_UID_LABEL, meta::uid(job)),
        (JOB_NAME_LABEL, meta::name(job)),
    ] {
        match labels[key].as_str() {
            None => errs.push(FieldError::required(format!("{path}[{key}]"), "")),
            Some(value) if value != wanted => errs.push(FieldError::invalid(
                format!("{path}[{key}]"),
                value,
                format!("must be '{wanted}'"),
            )),
            Some(_) => {}
        }
    }
    let expected = json!({ CONTROLLER_UID_LABEL: meta::uid(job), JOB_NAME_LABEL: meta::name(job) });
    if !meta::selector_matches(&spec["selector"], &expected) {
        errs.push(FieldError::invalid(
            "spec.selector",
            Rendered(spec["selector"].to_string()),
            "`selector` not auto-generated",
        ));
    }
    errs
}

fn validate_selector(spec: &Value) -> Result<Vec<FieldError>, Refusal> {
    let selector = &spec["selector"];
    if selector.is_null() {
        return Ok(vec![FieldError::required("spec.selector", "")]);
    }
    let typed: LabelSelector = serde_json::from_value(selector.clone())
        .map_err(|error| Refusal::BadRequest(format!("spec.selector: {error}")))?;
    let mut errs = validate_label_selector(&typed, "spec.selector");
    errs.extend(validate_selector_matches_template(spec, "spec"));
    Ok(errs)
}

/// A Job's spec at `path` (`spec`, or a CronJob's `spec.jobTemplate.spec`).
pub fn validate_spec(spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        errs.extend(nonnegative(&spec[field], &child(path, field)));
    }
    for field in ["backoffLimitPerIndex", "maxFailedIndexes", "successPolicy"] {
        if !spec[field].is_null() {
            errs.push(FieldError::forbidden(
                child(path, field),
                "not supported by skiff's job controller",
            ));
        }
    }
    if let Some(manager) = spec["managedBy"].as_str()
        && manager != JOB_CONTROLLER
    {
        errs.push(FieldError::not_supported(
            child(path, "managedBy"),
            manager,
            &[JOB_CONTROLLER],
        ));
    }
    if let Some(mode) = spec["completionMode"].as_str() {
        if mode != "NonIndexed" && mode != "Indexed" {
            errs.push(FieldError::not_supported(
                child(path, "completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
        if mode == "Indexed" {
            if spec["completions"].is_null() {
                errs.push(FieldError::required(
                    child(path, "completions"),
                    "when completion mode is Indexed",
                ));
            }
            if let Some(parallelism) = spec["parallelism"]
                .as_i64()
                .filter(|&p| p > MAX_INDEXED_PARALLELISM)
            {
                errs.push(FieldError::invalid(
                    child(path, "parallelism"),
                    parallelism,
                    format!(
                        "must be less than or equal to {MAX_INDEXED_PARALLELISM} when completion mode is Indexed"
                    ),
                ));
            }
        }
    }
    let pod_spec = &spec["template"]["spec"];
    let pod_path = child(path, "template.spec");
    if pod_spec["containers"].as_array().is_none_or(Vec::is_empty) {
        errs.push(FieldError::required(child(&pod_path, "containers"), ""));
    }
    let restart_path = child(&pod_path, "restartPolicy");
    let restart = pod_spec["restartPolicy"].as_str().unwrap_or_default();
    match restart {
        "" | "Always" => errs.push(FieldError::required(
            &restart_path,
            r#"valid values: "OnFailure", "Never""#,
        )),
        "OnFailure" | "Never" => {}
        other => errs.push(FieldError::not_supported(
            &restart_path,
            other,
            &["OnFailure", "Never"],
        )),
    }
    let policy = &spec["podFailurePolicy"];
    if !policy.is_null() {
        if restart == "OnFailure" {
            errs.push(FieldError::not_supported(
                &restart_path,
                restart,
                &["Never"],
            ));
        }
        errs.extend(validate_pod_failure_policy(
            policy,
            pod_spec,
            &child(path, "podFailurePolicy"),
        ));
    }
    if let Some(replacement) = spec["podReplacementPolicy"].as_str() {
        let path = child(path, "podReplacementPolicy");
        if policy.is_null() {
            if replacement != "TerminatingOrFailed" && replacement != "Failed" {
                errs.push(FieldError::not_supported(
                    path,
                    replacement,
                    &["Failed", "TerminatingOrFailed"],
                ));
            }
        } else if replacement != "Failed" {
            errs.push(FieldError::not_supported(path, replacement, &["Failed"]));
        }
    }
    errs
}

/// An integer field that may be unset but not negative.
pub fn nonnegative(value: &Value, path: &str) -> Option<FieldError> {
    let number = value.as_i64()?;
    (number < 0).then(|| FieldError::invalid(path, number, "must be greater than or equal to 0"))
}

fn validate_pod_failure_policy(policy: &Value, pod_spec: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let rules_path = child(path, "rules");
    let rules = policy["rules"].as_array().map_or(&[][..], Vec::as_slice);
    if rules.len() > MAX_RULES {
        errs.push(FieldError::too_long(&rules_path, MAX_RULES));
    }
    let containers: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| pod_spec[*list].as_array().into_iter().flatten())
        .filter_map(|container| container["name"].as_str())
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let path = index(&rules_path, i);
        let action = rule["action"].as_str().unwrap_or_default();
        match action {
            "FailJob" | "Ignore" | "Count" => {}
            "" => errs.push(FieldError::required(child(&path, "action"), "")),
            other => errs.push(FieldError::not_supported(
                child(&path, "action"),
                other,
                &["Count", "FailJob", "Ignore"],
            )),
        }
        match (
            rule["onExitCodes"].is_null(),
            rule["onPodConditions"].is_null(),
        ) {
            (false, false) => errs.push(FieldError::invalid(
                &path,
                Rendered(rule.to_string()),
                "specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (true, true) => errs.push(FieldError::invalid(
                &path,
                Rendered(rule.to_string()),
                "specifying one of OnExitCodes and OnPodConditions is required",
            )),
            (false, true) => errs.extend(validate_exit_codes(
                &rule["onExitCodes"],
                &containers,
                &child(&path, "onExitCodes"),
            )),
            (true, false) => errs.extend(validate_condition_patterns(
                &rule["onPodConditions"],
                &child(&path, "onPodConditions"),
            )),
        }
    }
    errs
}

fn validate_exit_codes(requirement: &Value, containers: &[&str], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(name) = requirement["containerName"].as_str()
        && !containers.contains(&name)
    {
        errs.push(FieldError::invalid(
            child(path, "containerName"),
            name,
            "must be one of the container or initContainer names in the pod template",
        ));
    }
    let operator = requirement["operator"].as_str().unwrap_or_default();
    if operator != "In" && operator != "NotIn" {
        errs.push(FieldError::not_supported(
            child(path, "operator"),
            operator,
            &["In", "NotIn"],
        ));
    }
    let values_path = child(path, "values");
    let values: Vec<i64> = requirement["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    if values.is_empty() {
        errs.push(FieldError::invalid(
            &values_path,
            Rendered("[]int32(nil)".to_owned()),
            "at least one value is required",
        ));
    }
    if values.len() > MAX_EXIT_CODES {
        errs.push(FieldError::too_long(&values_path, MAX_EXIT_CODES));
    }
    for (i, &value) in values.iter().enumerate() {
        let path = index(&values_path, i);
        if operator == "In" && value == 0 {
            errs.push(FieldError::invalid(
                &path,
                value,
                "must not be 0 for the In operator",
            ));
        }
        if i > 0 && values[i - 1] == value {
            errs.push(FieldError::duplicate(&path, value));
        } else if i > 0 && values[i - 1] > value {
            errs.push(FieldError::invalid(&path, value, "must be ordered"));
        }
    }
    errs
}

fn validate_condition_patterns(patterns: &Value, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let patterns = patterns.as_array().map_or(&[][..], Vec::as_slice);
    if patterns.len() > MAX_CONDITION_PATTERNS {
        errs.push(FieldError::too_long(path, MAX_CONDITION_PATTERNS));
    }
    for (i, pattern) in patterns.iter().enumerate() {
        let path = index(path, i);
        match pattern["type"].as_str().unwrap_or_default() {
            "" => errs.push(FieldError::required(child(&path, "type"), "")),
            kind => errs.extend(
                is_qualified_name(kind)
                    .into_iter()
                    .map(|msg| FieldError::invalid(child(&path, "type"), kind, msg)),
            ),
        }
        let status = pattern["status"].as_str().unwrap_or_default();
        if !matches!(status, "True" | "False" | "Unknown") {
            errs.push(FieldError::not_supported(
                child(&path, "status"),
                status,
                &["False", "True", "Unknown"],
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> Value {
        let mut job = json!({
            "metadata": { "name": "pi", "namespace": "default", "uid": "u-1" },
            "spec": spec,
        });
        default_spec(&mut job["spec"]);
        generate_selector(&mut job);
        job
    }

    fn template() -> Value {
        json!({ "spec": { "restartPolicy": "Never", "containers": [{ "name": "c", "image": "i" }] } })
    }

    fn messages(job: &Value) -> Vec<String> {
        validate(job)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn defaults_and_generated_selector_are_upstreams() {
        let job = job(json!({ "template": template() }));
        let spec = &job["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"],
            json!({ "matchLabels": { CONTROLLER_UID_LABEL: "u-1" } })
        );
        let labels = &spec["template"]["metadata"]["labels"];
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(labels["controller-uid"], "u-1");
        assert_eq!(labels[JOB_NAME_LABEL], "pi");
        assert!(messages(&job).is_empty(), "{:?}", messages(&job));
    }

    #[test]
    fn a_work_queue_job_keeps_completions_unset() {
        let job = job(json!({ "parallelism": 3, "template": template() }));
        assert!(job["spec"]["completions"].is_null());
    }

    #[test]
    fn bad_specs_name_the_field() {
        let bad = job(json!({ "completions": -1, "template": template() }));
        assert_eq!(
            messages(&bad),
            ["spec.completions: Invalid value: -1: must be greater than or equal to 0"]
        );
        let always = job(json!({ "template": { "spec": { "containers": [{ "name": "c" }] } } }));
        assert_eq!(
            messages(&always),
            [
                r#"spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never""#
            ]
        );
        let indexed =
            job(json!({ "completionMode": "Indexed", "parallelism": 2, "template": template() }));
        assert_eq!(
            messages(&indexed),
            ["spec.completions: Required value: when completion mode is Indexed"]
        );
    }

    #[test]
    fn pod_failure_policies_are_checked() {
        let policy = json!({ "rules": [
            { "action": "FailJob", "onExitCodes": { "operator": "In", "values": [0, 3, 2] } },
            { "action": "Ignore", "onPodConditions": [{ "type": "DisruptionTarget", "status": "True" }] },
            { "action": "Retry" },
        ] });
        let bad = job(json!({ "podFailurePolicy": policy, "template": template() }));
        let messages = messages(&bad);
        assert_eq!(
            messages[..3],
            [
                "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
                "spec.podFailurePolicy.rules[0].onExitCodes.values[2]: Invalid value: 2: must be ordered",
                r#"spec.podFailurePolicy.rules[2].action: Unsupported value: "Retry": supported values: "Count", "FailJob", "Ignore""#,
            ]
        );
        assert!(messages[3].contains("specifying one of OnExitCodes and OnPodConditions"));
    }

    #[test]
    fn template_and_completions_are_immutable() {
        let old = job(json!({ "completions": 2, "template": template() }));
        let mut new = old.clone();
        new["spec"]["completions"] = json!(3);
        new["spec"]["parallelism"] = json!(3);
        let errs = validate_update(&new, &old).unwrap();
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["spec.completions: Invalid value: 3: field is immutable"]
        );
    }
}
