//! What the workload kinds that stamp pods from a template (StatefulSets,
//! DaemonSets) check alike, worded as kube-apiserver's apps validation: a
//! selector that is set, valid and not empty, and a template whose labels
//! it selects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::controllers::meta::selector_matches;
use crate::validation::{FieldError, Rendered, child, go_quote, validate_label_selector};

/// `spec.selector` of a `kind` (`statefulset`, `daemonset`): required,
/// well-formed, and not empty.
pub fn validate_selector(spec: &Value, spec_path: &str, kind: &str) -> Vec<FieldError> {
    let path = child(spec_path, "selector");
    let selector = &spec["selector"];
    if selector.is_null() {
        return vec![FieldError::required(path, "")];
    }
    let Ok(typed) = serde_json::from_value::<LabelSelector>(selector.clone()) else {
        return vec![FieldError::invalid(
            &path,
            Rendered(go_selector(selector)),
            "",
        )];
    };
    let mut errs = validate_label_selector(&typed, &path);
    let terms = typed.match_labels.as_ref().map_or(0, |labels| labels.len())
        + typed.match_expressions.as_ref().map_or(0, Vec::len);
    if terms == 0 {
        errs.push(FieldError::invalid(
            path,
            Rendered(go_selector(selector)),
            format!("empty selector is invalid for {kind}"),
        ));
    }
    errs
}

/// `spec.template.metadata.labels` must be selected by `spec.selector`, or
/// the workload would make pods it does not own. A selector that is absent
/// or malformed is [`validate_selector`]'s to report.
pub fn validate_selector_matches_template(spec: &Value, spec_path: &str) -> Option<FieldError> {
    let selector = &spec["selector"];
    let typed = serde_json::from_value::<LabelSelector>(selector.clone()).ok()?;
    if !validate_label_selector(&typed, "").is_empty() {
        return None;
    }
    let labels = &spec["template"]["metadata"]["labels"];
    (!selector_matches(selector, labels)).then(|| {
        FieldError::invalid(
            child(spec_path, "template.metadata.labels"),
            Rendered(go_string_map(labels)),
            "`selector` does not match template `labels`",
        )
    })
}

/// A `map[string]string` as Go's `%#v` prints it (keys sorted).
pub fn go_string_map(map: &Value) -> String {
    match map.as_object() {
        None => "map[string]string(nil)".to_owned(),
        Some(map) => {
            let pairs: Vec<String> = map
                .iter()
                .map(|(key, value)| {
                    format!(
                        "{}:{}",
                        go_quote(key),
                        go_quote(value.as_str().unwrap_or_default())
                    )
                })
                .collect();
            format!("map[string]string{{{}}}", pairs.join(", "))
        }
    }
}

/// A `metav1.LabelSelector` as Go's `%#v` prints it, enough to recognise.
pub fn go_selector(selector: &Value) -> String {
    let expressions = match selector["matchExpressions"].as_array() {
        None => "[]v1.LabelSelectorRequirement(nil)".to_owned(),
        Some(list) if list.is_empty() => "[]v1.LabelSelectorRequirement{}".to_owned(),
        Some(list) => format!("[]v1.LabelSelectorRequirement{{...{} items}}", list.len()),
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{expressions}}}",
        go_string_map(&selector["matchLabels"])
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn selectors_are_required_and_not_empty() {
        let errs = validate_selector(&json!({}), "spec", "statefulset");
        assert_eq!(errs[0].to_string(), "spec.selector: Required value");
        let errs = validate_selector(&json!({ "selector": {} }), "spec", "daemonset");
        assert_eq!(
            errs[0].to_string(),
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), \
             MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"
        );
        let fine = json!({ "selector": { "matchLabels": { "app": "web" } } });
        assert!(validate_selector(&fine, "spec", "statefulset").is_empty());
    }

    #[test]
    fn the_template_must_carry_the_selected_labels() {
        let spec = json!({
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "db", "tier": "x" } } },
        });
        assert_eq!(
            validate_selector_matches_template(&spec, "spec")
                .unwrap()
                .to_string(),
            "spec.template.metadata.labels: Invalid value: \
             map[string]string{\"app\":\"db\", \"tier\":\"x\"}: `selector` does not match template `labels`"
        );
        let matching = json!({
            "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } } },
        });
        assert!(validate_selector_matches_template(&matching, "spec").is_none());
        assert!(validate_selector_matches_template(&json!({}), "spec").is_none());
    }
}
