//! What the storage kinds check alike: access modes, storage
//! quantities, volume modes.

use serde_json::Value;

use crate::quantity;
use crate::validation::{FieldError, Rendered, is_dns1123_subdomain};

const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// `spec.accessModes`: at least one (`missing` is upstream's message for
/// the kind), each supported, ReadWriteOncePod alone.
pub fn validate_access_modes(modes: &Value, path: &str, missing: &str) -> Vec<FieldError> {
    let modes: Vec<&str> = modes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if modes.is_empty() {
        return vec![FieldError::required(path, missing)];
    }
    let mut errs: Vec<FieldError> = modes
        .iter()
        .filter(|mode| !ACCESS_MODES.contains(mode))
        .map(|mode| FieldError::not_supported(path, *mode, ACCESS_MODES))
        .collect();
    if modes.contains(&"ReadWriteOncePod") && modes.len() > 1 {
        errs.push(FieldError::forbidden(
            path,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
    errs
}

/// A storage quantity in bytes; an error when it is not a quantity.
pub fn storage_bytes(value: &Value, path: &str) -> Result<f64, FieldError> {
    quantity::of(value).ok_or_else(|| {
        FieldError::invalid(
            path,
            Rendered(value.to_string()),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        )
    })
}

/// A storage size: a quantity greater than zero.
pub fn validate_positive_storage(value: &Value, path: &str) -> Option<FieldError> {
    match storage_bytes(value, path) {
        Err(error) => Some(error),
        Ok(bytes) if bytes <= 0.0 => Some(FieldError::invalid(
            path,
            Rendered(value.to_string()),
            "must be greater than zero",
        )),
        Ok(_) => None,
    }
}

/// `spec.storageClassName` (a DNS-1123 subdomain when set) and
/// `spec.volumeMode`.
pub fn validate_class_and_mode(spec: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(class) = spec["storageClassName"].as_str().filter(|c| !c.is_empty()) {
        errs.extend(
            is_dns1123_subdomain(class)
                .into_iter()
                .map(|message| FieldError::invalid("spec.storageClassName", class, message)),
        );
    }
    errs.extend(validate_volume_mode(spec));
    errs
}

/// `spec.volumeMode`: Filesystem; Block is refused.
fn validate_volume_mode(spec: &Value) -> Vec<FieldError> {
    let path = "spec.volumeMode";
    match spec["volumeMode"].as_str() {
        None | Some("Filesystem") => vec![],
        Some("Block") => vec![FieldError::forbidden(
            path,
            "block volumes are not supported by skiff",
        )],
        Some(other) => vec![FieldError::not_supported(
            path,
            other,
            &["Block", "Filesystem"],
        )],
    }
}

/// Whether two specs hold the same value at `field` (absent and null alike).
pub fn same(new: &Value, old: &Value, field: &str) -> bool {
    let value = |spec: &Value| spec.get(field).filter(|v| !v.is_null()).cloned();
    value(new) == value(old)
}
