//! PersistentVolumes: upstream's defaults (reclaim policy Retain, volume
//! mode Filesystem) and validation, for the two sources skiff serves:
//! `hostPath` and `local` (which needs a node affinity). Any other source
//! is refused, naming its field.

use serde_json::{Value, json};

use super::fields::{
    same, validate_access_modes, validate_class_and_mode, validate_positive_storage,
};
use crate::kinds::refusal::Refusal;
use crate::validation::{FieldError, Rendered, child};

/// The sources skiff's node agents mount.
const SERVED_SOURCES: &[&str] = &["hostPath", "local"];

/// Every other `PersistentVolumeSource` field: known, but refused.
const UNSERVED_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

pub fn default_volume(volume: &mut Value) {
    let spec = &mut volume["spec"];
    if spec["persistentVolumeReclaimPolicy"].is_null() {
        spec["persistentVolumeReclaimPolicy"] = json!("Retain");
    }
    if spec["volumeMode"].is_null() {
        spec["volumeMode"] = json!("Filesystem");
    }
}

pub fn validate(volume: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = Vec::new();
    let spec = &volume["spec"];
    errs.extend(validate_access_modes(
        &spec["accessModes"],
        "spec.accessModes",
        "must specify at least 1 access mode",
    ));
    errs.extend(validate_capacity(&spec["capacity"]));
    errs.extend(validate_source(spec));
    errs.extend(validate_reclaim_policy(spec));
    errs.extend(validate_class_and_mode(spec));
    if !spec["nodeAffinity"].is_null() {
        errs.extend(validate_node_affinity(&spec["nodeAffinity"]));
    }
    Ok(errs)
}

/// What an update may not change, then everything [`validate`] checks.
pub fn validate_update(volume: &Value, old: &Value) -> Result<Vec<FieldError>, Refusal> {
    let (spec, old_spec) = (&volume["spec"], &old["spec"]);
    let mut errs = Vec::new();
    if SERVED_SOURCES
        .iter()
        .chain(UNSERVED_SOURCES)
        .any(|source| !same(spec, old_spec, source))
    {
        errs.push(FieldError::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    for field in ["volumeMode", "nodeAffinity"] {
        if !same(spec, old_spec, field) && !old_spec[field].is_null() {
            errs.push(FieldError::invalid(
                child("spec", field),
                Rendered(spec[field].to_string()),
                "field is immutable",
            ));
        }
    }
    errs.extend(validate(volume)?);
    Ok(errs)
}

fn validate_capacity(capacity: &Value) -> Vec<FieldError> {
    let entries = capacity.as_object().map_or(0, |map| map.len());
    if entries == 0 {
        return vec![FieldError::required("spec.capacity", "")];
    }
    let storage = &capacity["storage"];
    if storage.is_null() || entries > 1 {
        return vec![FieldError::not_supported(
            "spec.capacity",
            Rendered(capacity.to_string()),
            &["storage"],
        )];
    }
    validate_positive_storage(storage, "spec.capacity[storage]")
        .into_iter()
        .collect()
}

/// Exactly one source, and one skiff serves.
fn validate_source(spec: &Value) -> Vec<FieldError> {
    let present = |source: &str| !spec[source].is_null();
    let mut errs: Vec<FieldError> = UNSERVED_SOURCES
        .iter()
        .filter(|source| present(source))
        .map(|source| {
            FieldError::forbidden(
                child("spec", source),
                "not supported by skiff: use hostPath or local",
            )
        })
        .collect();
    let served: Vec<&str> = SERVED_SOURCES
        .iter()
        .copied()
        .filter(|source| present(source))
        .collect();
    match served.as_slice() {
        [] if errs.is_empty() => {
            errs.push(FieldError::required("spec", "must specify a volume type"))
        }
        [] => {}
        [first, more @ ..] => {
            errs.extend(more.iter().map(|source| {
                FieldError::forbidden(
                    child("spec", source),
                    "may not specify more than 1 volume type",
                )
            }));
            errs.extend(validate_path(spec, first));
            if *first == "hostPath" {
                errs.extend(validate_host_path_type(&spec["hostPath"]["type"]));
            }
            if *first == "local" && spec["nodeAffinity"].is_null() {
                errs.push(FieldError::required(
                    "spec.nodeAffinity",
                    "Local volumes require node affinity",
                ));
            }
        }
    }
    errs
}

/// The source's `path`: required, absolute, without `..`.
fn validate_path(spec: &Value, source: &str) -> Vec<FieldError> {
    let path_field = format!("spec.{source}.path");
    match spec[source]["path"].as_str().filter(|p| !p.is_empty()) {
        None => vec![FieldError::required(path_field, "")],
        Some(path) if path.split('/').any(|part| part == "..") => {
            vec![FieldError::invalid(
                path_field,
                path,
                "must not contain '..'",
            )]
        }
        Some(path) if !path.starts_with('/') => {
            vec![FieldError::invalid(
                path_field,
                path,
                "must be an absolute path",
            )]
        }
        Some(_) => vec![],
    }
}

fn validate_host_path_type(kind: &Value) -> Vec<FieldError> {
    match kind.as_str() {
        Some(kind) if !HOST_PATH_TYPES.contains(&kind) => vec![FieldError::not_supported(
            "spec.hostPath.type",
            kind,
            HOST_PATH_TYPES,
        )],
        _ => vec![],
    }
}

fn validate_reclaim_policy(spec: &Value) -> Vec<FieldError> {
    let path = "spec.persistentVolumeReclaimPolicy";
    match spec["persistentVolumeReclaimPolicy"]
        .as_str()
        .unwrap_or_default()
    {
        "Delete" | "Retain" => vec![],
        "Recycle" => vec![FieldError::forbidden(
            path,
            "Recycle is not supported by skiff",
        )],
        other => vec![FieldError::not_supported(
            path,
            other,
            &["Delete", "Recycle", "Retain"],
        )],
    }
}

fn validate_node_affinity(affinity: &Value) -> Vec<FieldError> {
    let required = &affinity["required"];
    if required.is_null() {
        return vec![FieldError::required(
            "spec.nodeAffinity.required",
            "must specify required node constraints",
        )];
    }
    if required["nodeSelectorTerms"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        return vec![FieldError::required(
            "spec.nodeAffinity.required.nodeSelectorTerms",
            "must have at least one node selector term",
        )];
    }
    vec![]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(volume: Value) -> Vec<String> {
        let mut volume = volume;
        default_volume(&mut volume);
        validate(&volume)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn volume(spec: Value) -> Value {
        json!({ "metadata": { "name": "pv1" }, "spec": spec })
    }

    #[test]
    fn a_host_path_volume_is_valid() {
        let pv = volume(json!({
            "capacity": { "storage": "1Gi" },
            "accessModes": ["ReadWriteOnce"],
            "hostPath": { "path": "/srv/data", "type": "DirectoryOrCreate" },
        }));
        assert_eq!(messages(pv), Vec::<String>::new());
    }

    #[test]
    fn sources_are_one_that_skiff_serves() {
        let base = json!({ "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"] });
        let mut none = base.clone();
        none["storageClassName"] = json!("Bad_Class");
        let errors = messages(volume(none));
        assert!(errors.contains(&"spec: Required value: must specify a volume type".to_owned()));
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.storageClassName: Invalid value: \"Bad_Class\""))
        );
        let mut nfs = base.clone();
        nfs["nfs"] = json!({ "server": "x", "path": "/" });
        assert_eq!(
            messages(volume(nfs)),
            ["spec.nfs: Forbidden: not supported by skiff: use hostPath or local"]
        );
        let mut both = base.clone();
        both["hostPath"] = json!({ "path": "/a" });
        both["local"] = json!({ "path": "/../b" });
        assert_eq!(
            messages(volume(both)),
            ["spec.local: Forbidden: may not specify more than 1 volume type"]
        );
        let mut local = base;
        local["local"] = json!({ "path": "/a/../b" });
        assert_eq!(
            messages(volume(local)),
            [
                "spec.local.path: Invalid value: \"/a/../b\": must not contain '..'",
                "spec.nodeAffinity: Required value: Local volumes require node affinity",
            ]
        );
    }

    #[test]
    fn capacity_and_access_modes_are_required() {
        let pv =
            volume(json!({ "hostPath": { "path": "/a" }, "accessModes": ["ReadWriteSometimes"] }));
        assert_eq!(
            messages(pv),
            [
                "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                "spec.capacity: Required value",
            ]
        );
        let zero = volume(json!({ "hostPath": { "path": "/a" }, "capacity": { "storage": "0" } }));
        assert_eq!(
            messages(zero),
            [
                "spec.accessModes: Required value: must specify at least 1 access mode",
                "spec.capacity[storage]: Invalid value: \"0\": must be greater than zero",
            ]
        );
    }

    #[test]
    fn the_source_is_immutable() {
        let mut old = volume(json!({
            "capacity": { "storage": "1Gi" },
            "accessModes": ["ReadWriteOnce"],
            "hostPath": { "path": "/a" },
        }));
        default_volume(&mut old);
        let mut new = old.clone();
        new["spec"]["hostPath"]["path"] = json!("/b");
        let errors: Vec<String> = validate_update(&new, &old)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"
            ]
        );
    }
}
