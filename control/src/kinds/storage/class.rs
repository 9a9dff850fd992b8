//! StorageClasses: upstream's defaults (reclaimPolicy Delete,
//! volumeBindingMode Immediate), validation, the fields an update may not
//! change, and which class is the default one.

use serde_json::{Value, json};

use super::fields::same;
use crate::kinds::refusal::Refusal;
use crate::validation::{FieldError, is_qualified_name};

/// The annotation that makes a class the default for claims without one.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

const RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];

pub fn default_class_fields(class: &mut Value) {
    if class["reclaimPolicy"].is_null() {
        class["reclaimPolicy"] = json!("Delete");
    }
    if class["volumeBindingMode"].is_null() {
        class["volumeBindingMode"] = json!("Immediate");
    }
}

pub fn validate(class: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = Vec::new();
    match class["provisioner"].as_str().filter(|p| !p.is_empty()) {
        None => errs.push(FieldError::required("provisioner", "")),
        Some(provisioner) => errs.extend(
            is_qualified_name(&provisioner.to_ascii_lowercase())
                .into_iter()
                .map(|message| FieldError::invalid("provisioner", provisioner, message)),
        ),
    }
    for (field, supported) in [
        ("reclaimPolicy", RECLAIM_POLICIES),
        ("volumeBindingMode", BINDING_MODES),
    ] {
        let value = class[field].as_str().unwrap_or_default();
        if !supported.contains(&value) {
            errs.push(FieldError::not_supported(field, value, supported));
        }
    }
    Ok(errs)
}

pub fn validate_update(class: &Value, old: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = Vec::new();
    for field in ["parameters", "provisioner", "reclaimPolicy"] {
        if !same(class, old, field) {
            errs.push(FieldError::forbidden(
                field,
                format!("updates to {field} are forbidden."),
            ));
        }
    }
    if !same(class, old, "volumeBindingMode") {
        let mode = class["volumeBindingMode"].as_str().unwrap_or_default();
        errs.push(FieldError::invalid(
            "volumeBindingMode",
            mode,
            "field is immutable",
        ));
    }
    errs.extend(validate(class)?);
    Ok(errs)
}

/// The default class among `classes`, by the DEFAULT_CLASS_ANNOTATION annotation.
pub fn default_class(classes: &[Value]) -> Option<&str> {
    super::super::default_class::default_class(classes, DEFAULT_CLASS_ANNOTATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, default: bool, created: &str) -> Value {
        json!({ "metadata": { "name": name, "creationTimestamp": created,
            "annotations": { DEFAULT_CLASS_ANNOTATION: default.to_string() } }, "provisioner": "p" })
    }

    #[test]
    fn the_newest_default_class_wins() {
        let classes = [
            class("old", true, "2026-01-01T00:00:00Z"),
            class("new", true, "2026-02-01T00:00:00Z"),
            class("newest", false, "2026-03-01T00:00:00Z"),
        ];
        assert_eq!(default_class(&classes), Some("new"));
        assert_eq!(default_class(&classes[2..]), None);
    }

    #[test]
    fn classes_are_defaulted_and_checked() {
        let mut sc =
            json!({ "metadata": { "name": "fast" }, "provisioner": "skiff.io/local-path" });
        default_class_fields(&mut sc);
        assert_eq!(validate(&sc).unwrap(), vec![]);
        let mut changed = sc.clone();
        changed["provisioner"] = json!("other.io/x");
        changed["volumeBindingMode"] = json!("WaitForFirstConsumer");
        let messages: Vec<String> = validate_update(&changed, &sc)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            [
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable",
            ]
        );
        let bad = json!({ "metadata": { "name": "x" }, "reclaimPolicy": "Recycle", "volumeBindingMode": "Immediate" });
        let messages: Vec<String> = validate(&bad)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            messages,
            [
                "provisioner: Required value",
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
            ]
        );
    }
}
