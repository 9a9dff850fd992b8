//! ResourceQuotas and LimitRanges: upstream's validation (quantities,
//! resource names, scopes, LimitRange item types and their min <= default
//! <= max order) and LimitRange defaults. What they do to other objects is
//! admission (`crate::admission`); a quota's status is the controller's.

use serde_json::Value;

use super::env::Env;
use super::refusal::Refusal;
use super::strategy::{Strategy, Subresource};
use crate::admission::quota::SCOPES;
use crate::admission::usage::{COMPUTE, STANDARD, charged_by};
use crate::quantity::{Quantity, SYNTAX_MESSAGE};
use crate::validation::{FieldError, Rendered, go_quote};

#[derive(Debug)]
pub struct ResourceQuotaStrategy;

impl Strategy for ResourceQuotaStrategy {
    fn subresources(&self) -> &'static [Subresource] {
        &[Subresource::Status]
    }

    fn validate(&self, _env: &Env, quota: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(validate_quota(quota)?)
    }

    fn validate_update(&self, _env: &Env, quota: &Value, _old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(validate_quota(quota)?)
    }
}

#[derive(Debug)]
pub struct LimitRangeStrategy;

impl Strategy for LimitRangeStrategy {
    fn prepare_for_create(&self, range: &mut Value) {
        default_limit_range(range);
    }

    fn prepare_for_update(&self, range: &mut Value, _old: &Value) {
        default_limit_range(range);
    }

    fn validate(&self, _env: &Env, range: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(validate_limit_range(range)?)
    }

    fn validate_update(&self, _env: &Env, range: &Value, _old: &Value) -> Result<(), Refusal> {
        Refusal::unless_valid(validate_limit_range(range)?)
    }
}

/// A quantity field that must be a quantity of at least zero.
fn non_negative(value: &Value, path: &str) -> Result<Quantity, FieldError> {
    let rendered = || Rendered(go_quote(value.as_str().unwrap_or(&value.to_string())));
    match Quantity::of(value) {
        None => Err(FieldError::invalid(path, rendered(), SYNTAX_MESSAGE)),
        Some(amount) if amount.is_negative() => Err(FieldError::invalid(
            path,
            rendered(),
            "must be greater than or equal to 0",
        )),
        Some(amount) => Ok(amount),
    }
}

fn validate_quota(quota: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = Vec::new();
    let spec = &quota["spec"];
    for (list, field) in [
        (&spec["hard"], "spec.hard"),
        (&quota["status"]["hard"], "status.hard"),
        (&quota["status"]["used"], "status.used"),
    ] {
        for (name, amount) in list.as_object().into_iter().flatten() {
            let path = format!("{field}[{name}]");
            if field == "spec.hard" && charged_by(name).is_none() {
                let known: Vec<&str> = STANDARD.iter().map(|(name, ..)| *name).collect();
                errs.push(FieldError::not_supported(&path, name.as_str(), &known));
                continue;
            }
            match non_negative(amount, &path) {
                Err(error) => errs.push(error),
                Ok(amount)
                    if !amount.is_whole()
                        && !COMPUTE.contains(&name.as_str())
                        && name != "requests.storage" =>
                {
                    errs.push(FieldError::invalid(
                        &path,
                        Rendered(go_quote(&amount.to_string())),
                        "must be an integer",
                    ));
                }
                Ok(_) => {}
            }
        }
    }
    let scopes = spec["scopes"].as_array().into_iter().flatten().enumerate();
    for (index, scope) in scopes {
        let scope = scope.as_str().unwrap_or_default();
        if !SCOPES.contains(&scope) {
            errs.push(FieldError::not_supported(
                format!("spec.scopes[{index}]"),
                scope,
                SCOPES,
            ));
        }
    }
    if !spec["scopeSelector"].is_null() {
        errs.push(FieldError::forbidden(
            "spec.scopeSelector",
            "scope selectors are not supported by this server; use spec.scopes",
        ));
    }
    if spec["scopes"]
        .as_array()
        .is_some_and(|scopes| !scopes.is_empty())
    {
        for name in spec["hard"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, _)| name)
        {
            if charged_by(name)
                .is_some_and(|(group, plural)| !(group.is_empty() && plural == "pods"))
            {
                errs.push(FieldError::invalid(
                    "spec.scopes",
                    Rendered(spec["scopes"].to_string()),
                    format!("unsupported scope applied to resource {name}"),
                ));
            }
        }
    }
    Ok(errs)
}

const LIMIT_TYPES: &[&str] = &["Container", "PersistentVolumeClaim", "Pod"];
const LIMIT_LISTS: &[&str] = &[
    "max",
    "min",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
];

/// Upstream's defaults of a Container item: `default` from `max`,
/// `defaultRequest` from `default`, then from `min`.
fn default_limit_range(range: &mut Value) {
    let Some(items) = range["spec"]["limits"].as_array_mut() else {
        return;
    };
    for item in items.iter_mut().filter(|item| item["type"] == "Container") {
        for (from, to) in [
            ("max", "default"),
            ("default", "defaultRequest"),
            ("min", "defaultRequest"),
        ] {
            let source = item[from].as_object().cloned().unwrap_or_default();
            for (name, amount) in source {
                if item[to].get(&name).is_none() {
                    item[to][&name] = amount;
                }
            }
        }
    }
}

fn validate_limit_range(range: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = Vec::new();
    let mut seen = Vec::new();
    let items = range["spec"]["limits"].as_array().into_iter().flatten();
    for (index, item) in items.enumerate() {
        let at = format!("spec.limits[{index}]");
        let kind = item["type"].as_str().unwrap_or_default();
        if !LIMIT_TYPES.contains(&kind) {
            errs.push(FieldError::not_supported(
                format!("{at}.type"),
                kind,
                LIMIT_TYPES,
            ));
            continue;
        }
        if seen.contains(&kind) {
            errs.push(FieldError::duplicate(format!("{at}.type"), kind));
        }
        seen.push(kind);
        let names: &[&str] = if kind == "PersistentVolumeClaim" {
            &["storage"]
        } else {
            &["cpu", "memory", "ephemeral-storage"]
        };
        let mut lists = std::collections::BTreeMap::new();
        for list in LIMIT_LISTS {
            let mut parsed = std::collections::BTreeMap::new();
            for (name, amount) in item[*list].as_object().into_iter().flatten() {
                let path = format!("{at}.{list}[{name}]");
                if !names.contains(&name.as_str()) {
                    errs.push(FieldError::not_supported(&path, name.as_str(), names));
                    continue;
                }
                match non_negative(amount, &path) {
                    Ok(amount) => {
                        parsed.insert(name.clone(), amount);
                    }
                    Err(error) => errs.push(error),
                }
            }
            lists.insert(*list, parsed);
        }
        if kind == "Pod" {
            for list in ["default", "defaultRequest"] {
                if !lists[list].is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{at}.{list}"),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        }
        if kind == "PersistentVolumeClaim" && lists["min"].is_empty() && lists["max"].is_empty() {
            errs.push(FieldError::required(
                format!("{at}.limits"),
                "either minimum or maximum storage value is required, but neither was provided",
            ));
        }
        // (smaller list, larger list, message) in upstream's order.
        let orders = [
            (
                "min",
                "max",
                "min value {a} is greater than max value {b}",
                "min",
            ),
            (
                "min",
                "defaultRequest",
                "min value {a} is greater than default request value {b}",
                "defaultRequest",
            ),
            (
                "defaultRequest",
                "max",
                "default request value {a} is greater than max value {b}",
                "defaultRequest",
            ),
            (
                "defaultRequest",
                "default",
                "default request value {a} is greater than default limit value {b}",
                "defaultRequest",
            ),
            (
                "min",
                "default",
                "min value {a} is greater than default value {b}",
                "default",
            ),
            (
                "default",
                "max",
                "default value {a} is greater than max value {b}",
                "default",
            ),
        ];
        for (small, large, message, field) in orders {
            for (name, a) in &lists[small] {
                if let Some(b) = lists[large].get(name)
                    && a > b
                {
                    let shown = if field == small { a } else { b };
                    errs.push(FieldError::invalid(
                        format!("{at}.{field}[{name}]"),
                        Rendered(go_quote(&shown.to_string())),
                        message
                            .replace("{a}", &a.to_string())
                            .replace("{b}", &b.to_string()),
                    ));
                }
            }
        }
        for (name, ratio) in &lists["maxLimitRequestRatio"] {
            if *ratio < Quantity::units(1) {
                errs.push(FieldError::invalid(
                    format!("{at}.maxLimitRequestRatio[{name}]"),
                    Rendered(go_quote(&ratio.to_string())),
                    format!("ratio {ratio} is less than 1"),
                ));
            }
        }
    }
    Ok(errs)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn texts(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn quotas_need_known_non_negative_resources() {
        let quota = json!({
            "metadata": { "name": "q", "namespace": "a" },
            "spec": { "hard": { "pods": "-1", "cpu": "lots", "gpus": "1", "count/deployments.apps": "2" }, "scopes": ["Sometimes"] },
        });
        let errors = texts(validate_quota(&quota).unwrap());
        assert!(
            errors.iter().any(|e| e.starts_with(
                "spec.hard[pods]: Invalid value: \"-1\": must be greater than or equal to 0"
            )),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e
                    .starts_with("spec.hard[cpu]: Invalid value: \"lots\": quantities must match")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.hard[gpus]: Unsupported value: \"gpus\"")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.scopes[0]: Unsupported value: \"Sometimes\"")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(
                |e| e.ends_with("unsupported scope applied to resource count/deployments.apps")
            ),
            "{errors:?}"
        );
        assert_eq!(errors.len(), 5, "{errors:?}");
    }

    #[test]
    fn limit_ranges_keep_min_default_max_in_order() {
        let mut range = json!({
            "metadata": { "name": "l", "namespace": "a" },
            "spec": { "limits": [
                { "type": "Container", "max": { "cpu": "1" }, "min": { "memory": "1Gi" }, "default": { "memory": "512Mi" } },
                { "type": "Node" },
            ] },
        });
        default_limit_range(&mut range);
        assert_eq!(range["spec"]["limits"][0]["default"]["cpu"], "1");
        assert_eq!(range["spec"]["limits"][0]["defaultRequest"]["cpu"], "1");
        assert_eq!(
            texts(validate_limit_range(&range).unwrap()),
            [
                "spec.limits[0].defaultRequest[memory]: Invalid value: \"512Mi\": min value 1Gi is greater than default request value 512Mi",
                "spec.limits[0].default[memory]: Invalid value: \"512Mi\": min value 1Gi is greater than default value 512Mi",
                "spec.limits[1].type: Unsupported value: \"Node\": supported values: \"Container\", \"PersistentVolumeClaim\", \"Pod\"",
            ]
        );
    }
}
