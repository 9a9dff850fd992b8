//! OpenAPI v3 documents, one per served group-version, generated from the
//! k8s-openapi types: `kubectl apply` reads them to learn that the server
//! validates fields itself (the `fieldValidation` parameter of PATCH), and
//! `kubectl explain` shows their schemas.
//!
//! The schemas carry no `x-kubernetes-patch-*` metadata (k8s-openapi's do
//! not have it), so PATCH does not advertise strategic merge patch here:
//! kubectl then computes its strategic patches from its compiled-in types,
//! which have upstream's exact merge keys.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use bytes::Bytes;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::registry::{self, RESOURCES, Resource, group_version};
use crate::kinds::Subresource;

/// The documents, built on first use (they take a moment and a few MB).
struct Documents {
    /// `/openapi/v3`: where each group-version's document is.
    index: Bytes,
    /// By path below `/openapi/v3/`: `api/v1`, `apis/apps/v1`.
    by_path: HashMap<String, Bytes>,
}

static DOCUMENTS: OnceLock<Documents> = OnceLock::new();

fn documents() -> &'static Documents {
    DOCUMENTS.get_or_init(|| {
        let mut paths = Map::new();
        let mut by_path = HashMap::new();
        for (group, version) in registry::groups() {
            let path = root(group, version).trim_start_matches('/').to_owned();
            let document = serde_json::to_vec(&document(group, version))
                .expect("JSON values always serialize");
            // The hash lets clients cache a document until it changes.
            let mut hasher = DefaultHasher::new();
            document.hash(&mut hasher);
            let url = format!("/openapi/v3/{path}?hash={:016X}", hasher.finish());
            paths.insert(path.clone(), json!({ "serverRelativeURL": url }));
            by_path.insert(path, Bytes::from(document));
        }
        let index = serde_json::to_vec(&json!({ "paths": paths })).expect("JSON serializes");
        Documents {
            index: Bytes::from(index),
            by_path,
        }
    })
}

/// `/openapi/v3`.
pub fn index() -> Bytes {
    documents().index.clone()
}

/// `/openapi/v3/<path>`, e.g. `api/v1`; `None` for a group-version not served.
pub fn group_version_document(path: &str) -> Option<Bytes> {
    documents().by_path.get(path).cloned()
}

/// `/api/v1` or `/apis/<group>/<version>`.
fn root(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

fn document(group: &str, version: &str) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    let resources: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    for resource in &resources {
        (resource.typed.schema)(&mut generator);
        paths.extend(resource_paths(resource));
    }
    let mut schemas = generator.take_definitions(true);
    for resource in &resources {
        if let Some(schema) = schemas
            .get_mut(&*(resource.typed.schema_name)())
            .and_then(Value::as_object_mut)
        {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([gvk(resource)]),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": super::GIT_VERSION },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

fn gvk(resource: &Resource) -> Value {
    json!({ "group": resource.group, "version": resource.version, "kind": resource.kind })
}

/// The paths of one resource: collection, object and status.
fn resource_paths(resource: &Resource) -> Map<String, Value> {
    let root = root(resource.group, resource.version);
    let plural = resource.plural;
    let namespace = json!({ "name": "namespace", "in": "path", "required": true, "schema": { "type": "string" } });
    let name =
        json!({ "name": "name", "in": "path", "required": true, "schema": { "type": "string" } });
    let (collection, scope) = if resource.namespaced {
        (
            format!("{root}/namespaces/{{namespace}}/{plural}"),
            vec![namespace],
        )
    } else {
        (format!("{root}/{plural}"), vec![])
    };
    let object = format!("{collection}/{{name}}");
    let mut object_scope = scope.clone();
    object_scope.push(name);
    let op = |action| operation(resource, action);

    let mut paths = Map::new();
    let mut collection_ops =
        json!({ "get": op(Action::List), "post": op(Action::Create), "parameters": scope });
    if resource.deletes_collections {
        collection_ops["delete"] = op(Action::DeleteCollection);
    }
    paths.insert(collection, collection_ops);
    if resource.namespaced {
        paths.insert(
            format!("{root}/{plural}"),
            json!({ "get": op(Action::List) }),
        );
    }
    paths.insert(
        object.clone(),
        json!({
            "get": op(Action::Get),
            "put": op(Action::Update),
            "patch": op(Action::Patch),
            "delete": op(Action::Delete),
            "parameters": object_scope,
        }),
    );
    if resource.serves(Subresource::Status) {
        paths.insert(
            format!("{object}/status"),
            json!({
                "get": op(Action::Get),
                "put": op(Action::Update),
                "patch": op(Action::Patch),
                "parameters": object_scope,
            }),
        );
    }
    paths
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    List,
    Create,
    Get,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Action {
    /// `x-kubernetes-action`.
    fn name(self) -> &'static str {
        match self {
            Self::List => "list",
            Self::Create => "post",
            Self::Get => "get",
            Self::Update => "put",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
        }
    }

    fn query_parameters(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::List => &[
                ("labelSelector", "string"),
                ("fieldSelector", "string"),
                ("limit", "integer"),
                ("continue", "string"),
                ("resourceVersion", "string"),
                ("watch", "boolean"),
                ("allowWatchBookmarks", "boolean"),
                ("timeoutSeconds", "integer"),
            ],
            // No dryRun: skiff does not have it, and kubectl checks here
            // before it sends `--dry-run=server`.
            Self::Create | Self::Update | Self::Patch => {
                &[("fieldManager", "string"), ("fieldValidation", "string")]
            }
            Self::Get => &[],
            Self::Delete => DELETE_PARAMETERS,
            Self::DeleteCollection => DELETE_COLLECTION_PARAMETERS,
        }
    }
}

/// A DELETE's options in the query (or its body).
const DELETE_PARAMETERS: &[(&str, &str)] = &[
    ("gracePeriodSeconds", "integer"),
    ("propagationPolicy", "string"),
    ("orphanDependents", "boolean"),
    ("dryRun", "string"),
];

/// The options of a DELETE on a collection: the selectors, then those of
/// a DELETE.
const DELETE_COLLECTION_PARAMETERS: &[(&str, &str)] = &[
    ("labelSelector", "string"),
    ("fieldSelector", "string"),
    ("gracePeriodSeconds", "integer"),
    ("propagationPolicy", "string"),
    ("orphanDependents", "boolean"),
    ("dryRun", "string"),
];

fn operation(resource: &Resource, action: Action) -> Value {
    let kind =
        json!({ "$ref": format!("#/components/schemas/{}", (resource.typed.schema_name)()) });
    let parameters: Vec<Value> = action
        .query_parameters()
        .iter()
        .map(|(name, ty)| json!({ "name": name, "in": "query", "schema": { "type": ty } }))
        .collect();
    let response = match action {
        Action::List | Action::Delete | Action::DeleteCollection => json!({ "type": "object" }),
        _ => kind.clone(),
    };
    let mut operation = json!({
        "operationId": format!("{}{}", action.name(), resource.kind),
        "tags": [group_version(resource.group, resource.version)],
        "parameters": parameters,
        "responses": {
            "200": { "description": "OK", "content": { "application/json": { "schema": response } } },
        },
        "x-kubernetes-action": action.name(),
        "x-kubernetes-group-version-kind": gvk(resource),
    });
    let body = match action {
        Action::Create | Action::Update => Some(json!({ "application/json": { "schema": kind } })),
        Action::Patch => {
            let patch = json!({ "schema": { "type": "object" } });
            Some(json!({
                "application/json-patch+json": patch,
                "application/merge-patch+json": patch,
            }))
        }
        _ => None,
    };
    if let Some(content) = body {
        operation["requestBody"] = json!({ "content": content, "required": true });
    }
    operation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(bytes: Bytes) -> Value {
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn index_names_every_group_version() {
        let index = parsed(index());
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        assert!(index["paths"]["api/v1"].is_object());
        assert!(group_version_document("apis/apps/v2").is_none());
    }

    #[test]
    fn patch_of_a_kind_takes_field_validation() {
        let core = parsed(group_version_document("api/v1").unwrap());
        let patch = &core["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({ "group": "", "version": "v1", "kind": "Service" })
        );
        let parameters = patch["parameters"].as_array().unwrap();
        assert!(
            parameters
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        let service = &core["components"]["schemas"]["io.k8s.api.core.v1.Service"];
        assert_eq!(
            service["x-kubernetes-group-version-kind"][0]["kind"],
            "Service"
        );
        let port = &core["components"]["schemas"]["io.k8s.api.core.v1.ServicePort"];
        assert_eq!(port["properties"]["port"]["type"], "integer");
        assert!(core["paths"]["/api/v1/nodes/{name}/status"].is_object());
    }
}
