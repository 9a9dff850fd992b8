//! PersistentVolumeClaims: upstream's defaults (volume mode Filesystem),
//! validation, and the update rule: the spec is immutable, except that the
//! binder fills in `volumeName` and a claim without a class may get one.
//! skiff cannot expand volumes, so a larger request is refused.

use serde_json::{Value, json};

use super::fields::{
    storage_bytes, validate_access_modes, validate_class_and_mode, validate_positive_storage,
};
use crate::kinds::refusal::Refusal;
use crate::validation::FieldError;

const REQUEST_PATH: &str = "spec.resources.requests[storage]";

pub fn default_claim(claim: &mut Value) {
    if claim["spec"]["volumeMode"].is_null() {
        claim["spec"]["volumeMode"] = json!("Filesystem");
    }
}

pub fn validate(claim: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = Vec::new();
    let spec = &claim["spec"];
    errs.extend(validate_access_modes(
        &spec["accessModes"],
        "spec.accessModes",
        "at least 1 access mode is required",
    ));
    let request = &spec["resources"]["requests"]["storage"];
    if request.is_null() {
        errs.push(FieldError::required(REQUEST_PATH, ""));
    } else {
        errs.extend(validate_positive_storage(request, REQUEST_PATH));
    }
    errs.extend(validate_class_and_mode(spec));
    Ok(errs)
}

/// What an update may not change, then everything [`validate`] checks.
pub fn validate_update(claim: &Value, old: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = Vec::new();
    let (new_request, old_request) = (
        &claim["spec"]["resources"]["requests"]["storage"],
        &old["spec"]["resources"]["requests"]["storage"],
    );
    if let (Ok(new_bytes), Ok(old_bytes)) = (
        storage_bytes(new_request, REQUEST_PATH),
        storage_bytes(old_request, REQUEST_PATH),
    ) {
        if new_bytes < old_bytes {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "field can not be less than previous value",
            ));
        } else if new_bytes > old_bytes {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
            ));
        }
    }
    if comparable_spec(&claim["spec"], &old["spec"]) != comparable_spec(&old["spec"], &old["spec"])
    {
        errs.push(FieldError::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
    }
    errs.extend(validate(claim)?);
    Ok(errs)
}

/// `spec` without what an update may change over `old`: the request
/// (checked on its own), a volume name `old` lacks, a class `old` lacks.
fn comparable_spec(spec: &Value, old: &Value) -> Value {
    let mut spec = spec.clone();
    let Some(fields) = spec.as_object_mut() else {
        return spec;
    };
    if let Some(requests) = fields
        .get_mut("resources")
        .and_then(|resources| resources.get_mut("requests"))
        .and_then(Value::as_object_mut)
    {
        requests.remove("storage");
    }
    if old["volumeName"].as_str().is_none_or(str::is_empty) {
        fields.remove("volumeName");
    }
    if old["storageClassName"].is_null() {
        fields.remove("storageClassName");
    }
    fields.retain(|_, value| !value.is_null());
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(spec: Value) -> Value {
        let mut claim =
            json!({ "metadata": { "name": "data", "namespace": "default" }, "spec": spec });
        default_claim(&mut claim);
        claim
    }

    fn texts(errors: Vec<FieldError>) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn claims_need_modes_and_a_request() {
        assert_eq!(
            texts(validate(&claim(json!({}))).unwrap()),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources.requests[storage]: Required value",
            ]
        );
        let ok = claim(
            json!({ "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } }),
        );
        assert_eq!(texts(validate(&ok).unwrap()), Vec::<String>::new());
    }

    #[test]
    fn the_spec_is_immutable_but_for_binding() {
        let old = claim(
            json!({ "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } }),
        );
        let mut bound = old.clone();
        bound["spec"]["volumeName"] = json!("pv1");
        bound["spec"]["storageClassName"] = json!("local-path");
        assert_eq!(
            texts(validate_update(&bound, &old).unwrap()),
            Vec::<String>::new()
        );
        let mut rebound = bound.clone();
        rebound["spec"]["volumeName"] = json!("pv2");
        assert_eq!(
            texts(validate_update(&rebound, &bound).unwrap()),
            [
                "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
            ]
        );
        let mut bigger = bound.clone();
        bigger["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(
            texts(validate_update(&bigger, &bound).unwrap()),
            [
                "spec.resources.requests.storage: Forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
            ]
        );
    }
}
