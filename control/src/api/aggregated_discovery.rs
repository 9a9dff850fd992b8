//! Aggregated discovery (`apidiscovery.k8s.io/v2`): `/api` and `/apis`
//! answer with every group, version and resource at once when the client
//! asks for it in `Accept`, which saves kubectl a request per group-version.
//! Other clients keep getting the classic documents.

use serde_json::{Value, json};

use super::metrics;
use super::path::Document;
use super::registry::{self, RESOURCES, Resource, STATUS_VERBS};
use crate::kinds::Subresource;

/// The media type of the answer, which clients check before decoding.
pub const CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether `accept` asks for the v2 aggregated form.
pub fn wanted(accept: Option<&str>) -> bool {
    let parameters = ["g=apidiscovery.k8s.io", "v=v2", "as=APIGroupDiscoveryList"];
    super::media::offers(accept, &parameters)
}

/// The aggregated form of `/api` (the core group) or `/apis` (the named
/// groups); `None` for the other documents.
pub fn document(document: &Document) -> Option<Value> {
    let core = match document {
        Document::CoreVersions => true,
        Document::Groups => false,
        Document::Resources { .. } => return None,
    };
    let mut items: Vec<Value> = registry::groups()
        .into_iter()
        .filter(|(group, _)| group.is_empty() == core)
        .map(|(group, version)| group_discovery(group, version))
        .collect();
    if !core {
        items.push(metrics::aggregated_group());
        items.extend(super::reviews::aggregated_groups());
    }
    Some(json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }))
}

fn group_discovery(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .map(resource_discovery)
        .collect();
    json!({
        "metadata": { "name": group },
        "versions": [{ "version": version, "resources": resources, "freshness": "Current" }],
    })
}

fn resource_discovery(resource: &Resource) -> Value {
    let kind =
        json!({ "group": resource.group, "version": resource.version, "kind": resource.kind });
    let mut subresources = Vec::new();
    if resource.serves(Subresource::Status) {
        subresources
            .push(json!({ "subresource": "status", "responseKind": kind, "verbs": STATUS_VERBS }));
    }
    if resource.serves(Subresource::Scale) {
        subresources.push(json!({
            "subresource": "scale",
            "responseKind": { "group": "autoscaling", "version": "v1", "kind": "Scale" },
            "verbs": STATUS_VERBS,
        }));
    }
    if resource.serves(Subresource::Log) {
        subresources.push(json!({
            "subresource": "log",
            "responseKind": kind,
            "verbs": ["get"],
        }));
    }
    if resource.serves(Subresource::Binding) {
        subresources.push(json!({
            "subresource": "binding",
            "responseKind": { "group": "", "version": "v1", "kind": "Binding" },
            "verbs": ["create"],
        }));
    }
    if resource.serves(Subresource::Token) {
        subresources.push(json!({
            "subresource": "token",
            "responseKind": { "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest" },
            "verbs": ["create"],
        }));
    }
    if resource.serves(Subresource::Finalize) {
        subresources.push(json!({
            "subresource": "finalize",
            "responseKind": kind,
            "verbs": ["update"],
        }));
    }
    if resource.serves(Subresource::Approval) {
        subresources.push(json!({
            "subresource": "approval",
            "responseKind": kind,
            "verbs": STATUS_VERBS,
        }));
    }
    let mut entry = json!({
        "resource": resource.plural,
        "responseKind": kind,
        "scope": if resource.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": resource.singular,
        "verbs": resource.verbs(),
        "subresources": subresources,
    });
    if !resource.short_names.is_empty() {
        entry["shortNames"] = json!(resource.short_names);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_asks_for_it() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert!(wanted(Some(kubectl)));
        assert!(!wanted(Some("application/json")));
        assert!(!wanted(None));
    }

    #[test]
    fn core_and_named_groups() {
        let core = document(&Document::CoreVersions).unwrap();
        let items = core["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"]["name"], "");
        let resources = items[0]["versions"][0]["resources"].as_array().unwrap();
        let services = resources
            .iter()
            .find(|r| r["resource"] == "services")
            .unwrap();
        assert_eq!(services["scope"], "Namespaced");
        assert_eq!(services["shortNames"], json!(["svc"]));
        assert_eq!(services["subresources"][0]["subresource"], "status");

        let named = document(&Document::Groups).unwrap();
        let groups: Vec<&str> = named["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(
            groups.contains(&"apps") && groups.contains(&"metrics.k8s.io") && !groups.contains(&""),
            "{groups:?}"
        );
    }
}
