//! Discovery documents (`/api`, `/apis`, resource lists), from the registry
//! table, so `kubectl` finds every served kind with its short names.

use serde_json::{Value, json};

use super::path::Document;
use super::registry::{self, RESOURCES, STATUS_VERBS, group_version};
use super::{metrics, reviews};
use crate::kinds::Subresource;

pub fn document(document: &Document) -> Value {
    match document {
        Document::CoreVersions => core_versions(),
        Document::Groups => groups(),
        Document::Resources { group, version } => resources(group, version),
    }
}

/// `/api`: the core group's versions.
fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [],
    })
}

/// `/apis`: every named group.
fn groups() -> Value {
    let groups: Vec<Value> = registry::groups()
        .into_iter()
        .filter(|(group, _)| !group.is_empty())
        .map(|(group, version)| {
            let version =
                json!({ "groupVersion": group_version(group, version), "version": version });
            json!({ "name": group, "versions": [version.clone()], "preferredVersion": version })
        })
        .chain([metrics::group()])
        .chain(reviews::groups())
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/api/v1`, `/apis/<group>/<version>`.
fn resources(group: &str, version: &str) -> Value {
    if (group, version) == (metrics::GROUP, metrics::VERSION) {
        return metrics::resources();
    }
    if reviews::GROUPS.contains(&group) && version == reviews::VERSION {
        return reviews::resources(group);
    }
    let mut list = Vec::new();
    for resource in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": resource.verbs(),
        });
        if !resource.short_names.is_empty() {
            entry["shortNames"] = json!(resource.short_names);
        }
        list.push(entry);
        if resource.serves(Subresource::Status) {
            list.push(json!({
                "name": format!("{}/status", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": STATUS_VERBS,
            }));
        }
        if resource.serves(Subresource::Scale) {
            list.push(json!({
                "name": format!("{}/scale", resource.plural),
                "singularName": "",
                "namespaced": true,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": STATUS_VERBS,
            }));
        }
        if resource.serves(Subresource::Log) {
            list.push(json!({
                "name": format!("{}/log", resource.plural),
                "singularName": "",
                "namespaced": true,
                "kind": resource.kind,
                "verbs": ["get"],
            }));
        }
        if resource.serves(Subresource::Binding) {
            list.push(json!({
                "name": format!("{}/binding", resource.plural),
                "singularName": "",
                "namespaced": true,
                "kind": "Binding",
                "verbs": ["create"],
            }));
        }
        if resource.serves(Subresource::Token) {
            list.push(json!({
                "name": format!("{}/token", resource.plural),
                "singularName": "",
                "namespaced": true,
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }));
        }
        if resource.serves(Subresource::Finalize) {
            list.push(json!({
                "name": format!("{}/finalize", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": ["update"],
            }));
        }
        if resource.serves(Subresource::Approval) {
            list.push(json!({
                "name": format!("{}/approval", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": STATUS_VERBS,
            }));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_list_the_table() {
        let core = resources("", "v1");
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        for name in [
            "services",
            "services/status",
            "pods/binding",
            "serviceaccounts",
            "serviceaccounts/token",
            "nodes/status",
            "endpoints",
            "persistentvolumes/status",
            "persistentvolumeclaims/status",
        ] {
            assert!(names.contains(&name), "{name}");
        }
        let groups = groups();
        let group_names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            group_names,
            [
                "discovery.k8s.io",
                "events.k8s.io",
                "apps",
                "batch",
                "networking.k8s.io",
                "storage.k8s.io",
                "rbac.authorization.k8s.io",
                "coordination.k8s.io",
                "certificates.k8s.io",
                "metrics.k8s.io",
                "authentication.k8s.io",
                "authorization.k8s.io"
            ]
        );
        let reviews = resources("authorization.k8s.io", "v1");
        assert_eq!(reviews["resources"][0]["name"], "subjectaccessreviews");
        assert_eq!(reviews["resources"][1]["namespaced"], true);
        assert_eq!(resources("apps", "v1")["groupVersion"], "apps/v1");
    }
}
