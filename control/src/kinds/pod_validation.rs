//! Pod validation, the part of kube-apiserver's `ValidatePod` that keeps
//! names and paths from escaping the directories a node builds from them
//! (the pod's own name is checked for every kind, `api::objects`): container
//! and volume names
//! (DNS-1123 labels, unique), exactly one source per volume, mounts of
//! volumes that exist at unique paths, and relative sub-paths and item
//! paths without `..`. The node agent checks again before it touches its
//! filesystem.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::refusal::Refusal;
use crate::validation::{FieldError, child, index, is_dns1123_label};

/// The container lists whose names share one namespace.
const CONTAINER_LISTS: &[&str] = &["initContainers", "containers"];

pub fn validate(pod: &Value) -> Result<Vec<FieldError>, Refusal> {
    let mut errs = Vec::new();
    let spec = &pod["spec"];
    let volume_names = validate_volumes(spec, &mut errs);
    if spec["containers"].as_array().is_none_or(Vec::is_empty) {
        errs.push(FieldError::required("spec.containers", ""));
    }
    let mut container_names = HashSet::new();
    for list in CONTAINER_LISTS {
        let path = child("spec", list);
        for (i, container) in items(&spec[*list]).iter().enumerate() {
            let path = index(&path, i);
            validate_label_name(
                container["name"].as_str().unwrap_or_default(),
                &child(&path, "name"),
                &mut container_names,
                &mut errs,
            );
            validate_mounts(container, &path, &volume_names, &mut errs);
        }
    }
    Ok(errs)
}

fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// A container's or volume's name: present, a DNS-1123 label, unique
/// among `seen`.
pub(super) fn validate_label_name(
    name: &str,
    path: &str,
    seen: &mut HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    if name.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    let problems = is_dns1123_label(name);
    if !problems.is_empty() {
        errs.extend(
            problems
                .into_iter()
                .map(|message| FieldError::invalid(path, name, message)),
        );
    } else if !seen.insert(name.to_owned()) {
        errs.push(FieldError::duplicate(path, name));
    }
}

/// The volumes; returns their names.
fn validate_volumes(spec: &Value, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, volume) in items(&spec["volumes"]).iter().enumerate() {
        let path = index("spec.volumes", i);
        validate_label_name(
            volume["name"].as_str().unwrap_or_default(),
            &child(&path, "name"),
            &mut names,
            errs,
        );
        let empty = Map::new();
        let sources: Vec<(&String, &Value)> = volume
            .as_object()
            .unwrap_or(&empty)
            .iter()
            .filter(|(field, value)| *field != "name" && !value.is_null())
            .collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&path, "must specify a volume type")),
            [(kind, source), more @ ..] => {
                errs.extend(more.iter().map(|(kind, _)| {
                    FieldError::forbidden(
                        child(&path, kind),
                        "may not specify more than 1 volume type",
                    )
                }));
                validate_source(kind, source, &child(&path, kind), Place::Volume, errs);
            }
        }
    }
    names
}

/// Whether a source sits in a projected volume's `sources` (a secret
/// there is named by `name`, not `secretName`).
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Volume,
    Projection,
}

/// The fields of one volume source that name something or a path.
fn validate_source(
    kind: &str,
    source: &Value,
    path: &str,
    place: Place,
    errs: &mut Vec<FieldError>,
) {
    let required = |field: &str, errs: &mut Vec<FieldError>| {
        if source[field].as_str().is_none_or(str::is_empty) {
            errs.push(FieldError::required(child(path, field), ""));
        }
    };
    match kind {
        "persistentVolumeClaim" => required("claimName", errs),
        "configMap" => required("name", errs),
        "secret" if place == Place::Volume => required("secretName", errs),
        "secret" => required("name", errs),
        "serviceAccountToken" => match source["path"].as_str().filter(|p| !p.is_empty()) {
            None => required("path", errs),
            Some(relative) => errs.extend(descending_path(relative, &child(path, "path"))),
        },
        "hostPath" => {
            required("path", errs);
            if let Some(host_path) = source["path"].as_str() {
                errs.extend(no_backsteps(host_path, &child(path, "path")));
            }
        }
        _ => {}
    }
    for (i, item) in items(&source["items"]).iter().enumerate() {
        let item_path = child(&index(&child(path, "items"), i), "path");
        match item["path"].as_str().filter(|p| !p.is_empty()) {
            None => errs.push(FieldError::required(item_path, "")),
            Some(relative) => errs.extend(descending_path(relative, &item_path)),
        }
    }
    for (i, projection) in items(&source["sources"]).iter().enumerate() {
        let projection_path = index(&child(path, "sources"), i);
        for (kind, inner) in projection.as_object().into_iter().flatten() {
            let inner_path = child(&projection_path, kind);
            validate_source(kind, inner, &inner_path, Place::Projection, errs);
        }
    }
}

/// The container's mounts: of existing volumes, at unique paths, with
/// relative sub-paths that stay inside the volume.
fn validate_mounts(
    container: &Value,
    path: &str,
    volumes: &HashSet<String>,
    errs: &mut Vec<FieldError>,
) {
    let mut mount_paths = HashSet::new();
    for (i, mount) in items(&container["volumeMounts"]).iter().enumerate() {
        let path = index(&child(path, "volumeMounts"), i);
        let name = mount["name"].as_str().unwrap_or_default();
        if name.is_empty() {
            errs.push(FieldError::required(child(&path, "name"), ""));
        } else if !volumes.contains(name) {
            errs.push(FieldError::not_found(child(&path, "name"), name));
        }
        match mount["mountPath"].as_str().filter(|p| !p.is_empty()) {
            None => errs.push(FieldError::required(child(&path, "mountPath"), "")),
            Some(mount_path) if !mount_paths.insert(mount_path.to_owned()) => errs.push(
                FieldError::invalid(child(&path, "mountPath"), mount_path, "must be unique"),
            ),
            Some(_) => {}
        }
        for field in ["subPath", "subPathExpr"] {
            if let Some(sub_path) = mount[field].as_str().filter(|p| !p.is_empty()) {
                errs.extend(descending_path(sub_path, &child(&path, field)));
            }
        }
    }
}

/// Upstream's `validateLocalDescendingPath`: relative, without `..`.
fn descending_path(relative: &str, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if relative.starts_with('/') {
        errs.push(FieldError::invalid(
            path,
            relative,
            "must be a relative path",
        ));
    }
    errs.extend(no_backsteps(relative, path));
    errs
}

fn no_backsteps(target: &str, path: &str) -> Vec<FieldError> {
    if target.split(['/', '\\']).any(|part| part == "..") {
        vec![FieldError::invalid(path, target, "must not contain '..'")]
    } else {
        vec![]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn texts(pod: Value) -> Vec<String> {
        validate(&pod)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn pod(spec: Value) -> Value {
        json!({ "metadata": { "name": "web", "namespace": "default" }, "spec": spec })
    }

    #[test]
    fn a_pod_with_volumes_is_valid() {
        let valid = pod(json!({
            "containers": [{ "name": "app", "volumeMounts": [
                { "name": "data", "mountPath": "/data", "subPath": "a/b" },
                { "name": "config", "mountPath": "/etc/app" },
            ] }],
            "volumes": [
                { "name": "data", "persistentVolumeClaim": { "claimName": "data" } },
                { "name": "config", "configMap": { "name": "app", "items": [{ "key": "k", "path": "conf/k" }] } },
                { "name": "all", "projected": { "sources": [
                    { "secret": { "name": "token" } },
                    { "serviceAccountToken": { "path": "sa/token" } },
                ] } },
            ],
        }));
        assert_eq!(texts(valid), Vec::<String>::new());
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        let bad = json!({
            "metadata": { "name": "../etc", "namespace": "default" },
            "spec": {
                "containers": [{ "name": "../x" }, { "name": "App" }],
                "initContainers": [{ "name": "app" }, { "name": "app" }],
                "volumes": [{ "name": "a/b", "emptyDir": {} }],
            },
        });
        let errors = texts(bad);
        let fields: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.volumes[0].name",
                "spec.initContainers[1].name",
                "spec.containers[0].name",
                "spec.containers[1].name",
            ]
        );
        assert_eq!(
            errors[1],
            "spec.initContainers[1].name: Duplicate value: \"app\""
        );
    }

    #[test]
    fn volumes_and_mounts_are_checked() {
        let bad = pod(json!({
            "containers": [{ "name": "app", "volumeMounts": [
                { "name": "missing", "mountPath": "/a" },
                { "name": "two", "mountPath": "/a", "subPath": "../up" },
                { "name": "none", "mountPath": "/b", "subPath": "/abs" },
            ] }],
            "volumes": [
                { "name": "none" },
                { "name": "two", "emptyDir": {}, "hostPath": { "path": "/x/../y" } },
                { "name": "claim", "persistentVolumeClaim": {} },
                { "name": "all", "projected": { "sources": [
                    { "secret": { "secretName": "token" } },
                    { "configMap": { "name": "c", "items": [{ "key": "k", "path": "../k" }] } },
                ] } },
            ],
        }));
        assert_eq!(
            texts(bad),
            [
                "spec.volumes[0]: Required value: must specify a volume type",
                "spec.volumes[1].hostPath: Forbidden: may not specify more than 1 volume type",
                "spec.volumes[2].persistentVolumeClaim.claimName: Required value",
                "spec.volumes[3].projected.sources[0].secret.name: Required value",
                "spec.volumes[3].projected.sources[1].configMap.items[0].path: Invalid value: \"../k\": must not contain '..'",
                "spec.containers[0].volumeMounts[0].name: Not found: \"missing\"",
                "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/a\": must be unique",
                "spec.containers[0].volumeMounts[1].subPath: Invalid value: \"../up\": must not contain '..'",
                "spec.containers[0].volumeMounts[2].subPath: Invalid value: \"/abs\": must be a relative path",
            ]
        );
    }
}
