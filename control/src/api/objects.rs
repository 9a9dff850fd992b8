//! What the server fills in or keeps on objects it is sent: identity and
//! defaults on create, immutable metadata and status on update.

use serde_json::{Map, Value, json};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[cfg(any(test, fuzzing))]
use super::field_validation::FieldValidation;
use super::protobuf;
use super::registry::Resource;
use super::status::ApiError;
use crate::clock;
#[cfg(any(test, fuzzing))]
use crate::kinds::{Env, Refusal};
use crate::validation::{FieldError, validate_object_meta, validate_object_meta_update};

/// A request body as its `Content-Type` says: JSON, or Kubernetes'
/// protobuf (what client-go sends by default), as JSON.
pub fn decode_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    if let Some(content_type) = content_type {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if media == protobuf::MEDIA_TYPE {
            return protobuf::decode_object(body).map_err(|error| {
                ApiError::bad_request(format!(
                    "the request body is not a valid protobuf object: {error}"
                ))
            });
        }
        if !matches!(media, "application/json" | "*/*" | "") {
            return Err(ApiError::unsupported_media_type(content_type));
        }
    }
    parse_body(body)
}

/// What a create does with a body that needs nothing stored: decoded,
/// checked against the URL, prepared, defaulted and validated by the kind's
/// strategy (no admission, allocation or write). The entry of the property
/// tests and of the fuzz target `create_body`.
#[cfg(any(test, fuzzing))]
pub fn check_new_object(
    env: &Env,
    resource: &Resource,
    namespace: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mut object = decode_body(content_type, body)?;
    check_type(&mut object, resource)?;
    check_namespace(&mut object, resource, namespace)?;
    FieldValidation::Warn.apply(resource, &mut object)?;
    let name = prepare_create(&mut object, resource)?;
    resource.strategy.prepare_for_create(&mut object);
    let metadata = validate_new_metadata(&object, resource)?;
    Refusal::combine(metadata, resource.strategy.validate(env, &object))
        .map_err(|refusal| ApiError::refused(refusal, resource, &name))?;
    Ok(object)
}

/// Parses a request body as a JSON object.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!("the request body is not valid JSON: {error}"))
    })?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(value)
}

/// Checks `kind`/`apiVersion` against the URL's resource and fills them in
/// when missing.
pub fn check_type(object: &mut Value, resource: &Resource) -> Result<(), ApiError> {
    let api_version = resource.api_version();
    for (field, expected) in [
        ("apiVersion", api_version.as_str()),
        ("kind", resource.kind),
    ] {
        match object.get(field).and_then(Value::as_str) {
            None | Some("") => object[field] = json!(expected),
            Some(actual) if actual == expected => {}
            Some(actual) => {
                return Err(ApiError::bad_request(format!(
                    "the {field} in the data ({actual}) does not match the expected {field} ({expected})"
                )));
            }
        }
    }
    Ok(())
}

/// The object's `metadata`, created when missing.
pub fn metadata(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let root = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
    let metadata = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if metadata.is_null() {
        *metadata = Value::Object(Map::new());
    }
    metadata
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// Makes the namespace in the body agree with the URL's: filled in when
/// missing, a 400 when different, removed for cluster-scoped kinds.
pub fn check_namespace(
    object: &mut Value,
    resource: &Resource,
    namespace: Option<&str>,
) -> Result<(), ApiError> {
    let metadata = metadata(object)?;
    match namespace {
        Some(namespace) if resource.namespaced => {
            match metadata.get("namespace").and_then(Value::as_str) {
                None | Some("") => {
                    metadata.insert("namespace".into(), json!(namespace));
                }
                Some(given) if given == namespace => {}
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
        }
        _ => {
            metadata.remove("namespace");
        }
    }
    Ok(())
}

/// Prepares a new object: name (from `generateName`), uid, creation time,
/// generation, initial status. Returns its name, empty when it has neither
/// (which [`validate_new_metadata`] refuses).
pub fn prepare_create(object: &mut Value, resource: &Resource) -> Result<String, ApiError> {
    let has_spec = object.get("spec").is_some();
    let metadata = metadata(object)?;
    let name = match metadata.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => match metadata.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                let name = format!("{prefix}{}", crate::validation::random_suffix());
                metadata.insert("name".into(), json!(name));
                name
            }
            _ => String::new(),
        },
    };
    for server_owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
    ] {
        metadata.remove(server_owned);
    }
    metadata.insert("uid".into(), json!(skiff_etcd::new_uid()));
    metadata.insert("creationTimestamp".into(), clock::now());
    if has_spec {
        metadata.insert("generation".into(), json!(1));
    }
    if let Some(status) = resource.strategy.initial_status() {
        object["status"] = (resource.typed.complete_status)(status);
    }
    Ok(name)
}

/// kube-apiserver's `ValidateObjectMeta` of a new (prepared) object, with
/// its kind's name rule, for every kind: names become URL segments and etcd
/// keys, so this runs before any key is built.
pub fn validate_new_metadata(
    object: &Value,
    resource: &Resource,
) -> Result<Vec<FieldError>, ApiError> {
    Ok(validate_object_meta(
        &object_meta(object)?,
        resource.namespaced,
        resource.names,
    ))
}

/// `ValidateObjectMetaUpdate` of an update of `old`, for every kind.
pub fn validate_updated_metadata(object: &Value, old: &Value) -> Result<Vec<FieldError>, ApiError> {
    Ok(validate_object_meta_update(
        &object_meta(object)?,
        &object_meta(old)?,
    ))
}

fn object_meta(object: &Value) -> Result<ObjectMeta, ApiError> {
    serde_json::from_value(object["metadata"].clone())
        .map_err(|error| ApiError::bad_request(format!("metadata cannot be decoded: {error}")))
}

/// The object an update stores: `sent`, with the server-owned metadata of
/// `current` and, when the kind's status strategy says so, its current
/// status (only `/status` changes that). Bumps `generation` when the spec
/// changed.
pub fn merge_update(
    mut sent: Value,
    current: &Value,
    resource: &Resource,
) -> Result<Value, ApiError> {
    let spec_changed = sent.get("spec") != current.get("spec");
    let current_meta = &current["metadata"];
    let metadata = metadata(&mut sent)?;
    for kept in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match current_meta.get(kept) {
            Some(value) => metadata.insert(kept.into(), value.clone()),
            None => metadata.remove(kept),
        };
    }
    // The managedFields sent replace the current ones (kube-apiserver lets
    // clients reset them so); sent none, the current ones stay.
    if metadata.get("managedFields").is_none_or(Value::is_null)
        && let Some(managed) = current_meta.get("managedFields")
    {
        metadata.insert("managedFields".into(), managed.clone());
    }
    if spec_changed && let Some(generation) = current_meta["generation"].as_i64() {
        metadata.insert("generation".into(), json!(generation + 1));
    }
    if resource.strategy.keeps_status_on_update() {
        match current.get("status") {
            Some(status) => sent["status"] = status.clone(),
            None => {
                if let Some(object) = sent.as_object_mut() {
                    object.remove("status");
                }
            }
        }
    }
    Ok(sent)
}

/// A `<Kind>List` of `items` with the list's `metadata`.
pub fn list(resource: &Resource, metadata: Value, items: Vec<Value>) -> Value {
    json!({
        "kind": format!("{}List", resource.kind),
        "apiVersion": resource.api_version(),
        "metadata": metadata,
        "items": items,
    })
}

/// Whether the object has `metadata.finalizers`: then a DELETE only marks
/// it, and whoever owns each finalizer removes it when done.
pub fn has_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|finalizers| !finalizers.is_empty())
}

/// `object` marked for deletion until its finalizers are gone.
pub fn mark_finalizing(mut object: Value) -> Value {
    if object["metadata"]["deletionTimestamp"].is_null() {
        object["metadata"]["deletionTimestamp"] = clock::now();
        object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    }
    object
}

/// Whether an update from `before` to `after` removed the last finalizer
/// of an object marked for deletion: then it is removed.
pub fn finalized(before: &Value, after: &Value) -> bool {
    !after["metadata"]["deletionTimestamp"].is_null()
        && has_finalizers(before)
        && !has_finalizers(after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::find;

    #[test]
    fn create_fills_identity_and_checks_the_type() {
        let services = find("", "v1", "services").unwrap();
        let mut object = json!({ "metadata": { "generateName": "web-", "resourceVersion": "7" }, "spec": {}, "status": { "x": 1 } });
        check_type(&mut object, services).unwrap();
        check_namespace(&mut object, services, Some("default")).unwrap();
        let name = prepare_create(&mut object, services).unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        let metadata = &object["metadata"];
        assert_eq!(metadata["namespace"], "default");
        assert_eq!(metadata["uid"].as_str().unwrap().len(), 36);
        assert!(
            metadata["creationTimestamp"]
                .as_str()
                .unwrap()
                .ends_with('Z')
        );
        assert!(metadata.get("resourceVersion").is_none());
        assert_eq!(object["status"], json!({ "loadBalancer": {} }));
        assert_eq!(object["kind"], "Service");

        let mut wrong = json!({ "apiVersion": "apps/v1", "kind": "Service" });
        assert_eq!(check_type(&mut wrong, services).unwrap_err().code, 400);
        let mut elsewhere = json!({ "metadata": { "namespace": "other" } });
        assert!(check_namespace(&mut elsewhere, services, Some("default")).is_err());
        let mut unnamed = json!({ "metadata": { "namespace": "default" } });
        assert_eq!(prepare_create(&mut unnamed, services).unwrap(), "");
        assert_eq!(
            validate_new_metadata(&unnamed, services).unwrap()[0].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }

    /// Every kind's names follow its rule, checked before anything is
    /// stored (ConfigMaps and Deployments like most kinds, Namespaces,
    /// Services and core Events their own).
    #[test]
    fn names_follow_each_kinds_rule() {
        let long = "a".repeat(300);
        let refused = |group: &str, plural: &str, name: &str| {
            let resource = find(group, "v1", plural).unwrap();
            let namespace = resource.namespaced.then_some("default");
            let object = json!({ "metadata": { "name": name, "namespace": namespace } });
            let errs = validate_new_metadata(&object, resource).unwrap();
            errs.iter().map(ToString::to_string).collect::<Vec<_>>()
        };
        for (group, plural) in [
            ("", "configmaps"),
            ("", "secrets"),
            ("", "pods"),
            ("", "nodes"),
            ("apps", "deployments"),
            ("batch", "cronjobs"),
            ("storage.k8s.io", "storageclasses"),
            ("events.k8s.io", "events"),
        ] {
            assert_eq!(
                refused(group, plural, "UPPER"),
                [
                    "metadata.name: Invalid value: \"UPPER\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                ],
                "{plural}"
            );
            for bad in ["..", "a/b", "a%b", long.as_str()] {
                assert_eq!(refused(group, plural, bad).len(), 1, "{plural} {bad}");
            }
            assert!(refused(group, plural, "web.v1").is_empty(), "{plural}");
        }
        assert!(refused("", "namespaces", "web.v1")[0].ends_with("must not contain dots"));
        assert!(refused("", "namespaces", "UPPER")[0].contains("RFC 1123 label"));
        assert!(refused("", "services", "1web")[0].contains("DNS-1035 label"));
        assert!(refused("", "events", "Web.17a2b").is_empty());
        assert_eq!(
            refused("", "events", ".."),
            ["metadata.name: Invalid value: \"..\": may not be '..'"]
        );
    }

    #[test]
    fn update_keeps_server_fields_and_status() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let current = json!({
            "metadata": { "name": "d", "namespace": "a", "uid": "u1", "generation": 3, "creationTimestamp": "t" },
            "spec": { "replicas": 1 },
            "status": { "replicas": 1 },
        });
        let sent = json!({
            "metadata": { "name": "d", "uid": "forged" },
            "spec": { "replicas": 2 },
            "status": { "replicas": 9 },
        });
        let updated = merge_update(sent, &current, deployments).unwrap();
        assert_eq!(updated["metadata"]["uid"], "u1");
        assert_eq!(updated["metadata"]["generation"], 4);
        assert_eq!(updated["status"], json!({ "replicas": 1 }));
        let status = deployments.strategy.status_update(
            &json!({ "status": { "replicas": 2 }, "spec": { "replicas": 5 } }),
            &current,
        );
        assert_eq!(status["spec"], json!({ "replicas": 1 }));
        assert_eq!(status["status"], json!({ "replicas": 2 }));
    }
}
