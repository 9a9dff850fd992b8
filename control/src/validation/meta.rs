//! `metadata` and label selector validation (apimachinery's
//! `ValidateObjectMeta`, `ValidateLabels`, `ValidateAnnotations`,
//! `ValidateLabelSelector`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

use super::field::{FieldError, Rendered, child, index};
use super::names::{
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value, is_valid_path_segment_name,
};

/// Annotations may hold at most this many bytes (keys plus values) in total.
const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Which rule an object's name follows, after the name function each
/// kind's validation passes to kube-apiserver's `ValidateObjectMeta`: it
/// depends on the kind because some names end up in DNS (Services) or in
/// other names' places (Namespaces). Every rule keeps a name usable as one
/// segment of a URL and of an etcd key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Only `IsValidPathSegmentName` (core/v1 Events, which upstream keeps
    /// lax for old clients).
    PathSegment,
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
}

impl NameRule {
    /// Problems with `name`. For a `generateName` prefix a trailing dash is
    /// fine, since random characters will follow it.
    pub fn check(self, name: &str, is_prefix: bool) -> Vec<String> {
        let masked;
        let dns_name = match name.strip_suffix('-') {
            Some(stem) if is_prefix => {
                masked = format!("{stem}a");
                &masked
            }
            _ => name,
        };
        match self {
            Self::PathSegment => is_valid_path_segment_name(name, is_prefix),
            Self::Dns1123Subdomain => is_dns1123_subdomain(dns_name),
            Self::Dns1123Label => is_dns1123_label(dns_name),
            Self::Dns1035Label => is_dns1035_label(dns_name),
        }
    }
}

/// `metadata` of an object of a namespaced (or cluster-scoped) kind whose
/// names follow `rule`. Expects `generateName` already resolved into `name`.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    rule: NameRule,
) -> Vec<FieldError> {
    let path = "metadata";
    let mut errs = Vec::new();
    if let Some(generate_name) = meta.generate_name.as_deref().filter(|g| !g.is_empty()) {
        for msg in rule.check(generate_name, true) {
            errs.push(FieldError::invalid(
                child(path, "generateName"),
                generate_name,
                msg,
            ));
        }
    }
    match meta.name.as_deref().filter(|n| !n.is_empty()) {
        None => errs.push(FieldError::required(
            child(path, "name"),
            "name or generateName is required",
        )),
        Some(name) => {
            for msg in rule.check(name, false) {
                errs.push(FieldError::invalid(child(path, "name"), name, msg));
            }
        }
    }
    let namespace = meta.namespace.as_deref().filter(|n| !n.is_empty());
    match (namespaced, namespace) {
        (true, None) => errs.push(FieldError::required(child(path, "namespace"), "")),
        (true, Some(ns)) => {
            for msg in NameRule::Dns1123Label.check(ns, false) {
                errs.push(FieldError::invalid(child(path, "namespace"), ns, msg));
            }
        }
        (false, Some(_)) => errs.push(FieldError::forbidden(
            child(path, "namespace"),
            "not allowed on this type",
        )),
        (false, None) => {}
    }
    if let Some(generation) = meta.generation.filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            child(path, "generation"),
            generation,
            "must be greater than or equal to 0",
        ));
    }
    errs.extend(validate_maps_and_references(meta));
    errs
}

/// What both a new object and an update must have right: labels,
/// annotations, finalizers and ownerReferences.
fn validate_maps_and_references(meta: &ObjectMeta) -> Vec<FieldError> {
    let path = "metadata";
    let mut errs = Vec::new();
    if let Some(labels) = &meta.labels {
        errs.extend(validate_labels(labels, &child(path, "labels")));
    }
    if let Some(annotations) = &meta.annotations {
        errs.extend(validate_annotations(
            annotations,
            &child(path, "annotations"),
        ));
    }
    if let Some(finalizers) = &meta.finalizers {
        errs.extend(validate_finalizers(finalizers, &child(path, "finalizers")));
    }
    if let Some(owners) = &meta.owner_references {
        errs.extend(validate_owner_references(
            owners,
            &child(path, "ownerReferences"),
        ));
    }
    errs
}

/// Finalizers are qualified names; upstream names the list, not the element.
fn validate_finalizers(finalizers: &[String], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for finalizer in finalizers {
        for msg in is_qualified_name(finalizer) {
            errs.push(FieldError::invalid(path, finalizer, msg));
        }
    }
    let has = |name: &str| finalizers.iter().any(|f| f == name);
    if has(FINALIZER_ORPHAN) && has(FINALIZER_FOREGROUND) {
        errs.push(FieldError::invalid(
            path,
            Rendered(format!("[{}]", finalizers.join(" "))),
            format!("finalizer {FINALIZER_FOREGROUND} and {FINALIZER_ORPHAN} cannot be both set"),
        ));
    }
    errs
}

/// The garbage collector's finalizers (metav1 `FinalizerOrphanDependents`,
/// `FinalizerDeleteDependents`).
pub const FINALIZER_ORPHAN: &str = "orphan";
pub const FINALIZER_FOREGROUND: &str = "foregroundDeletion";

/// Each ownerReference names its owner completely (apiVersion with a
/// version, kind, name, uid), and at most one is the controller.
fn validate_owner_references(owners: &[OwnerReference], path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut controller: Option<String> = None;
    for owner in owners {
        let version = match owner.api_version.split('/').collect::<Vec<_>>().as_slice() {
            [version] | [_, version] => *version,
            _ => "",
        };
        let required = [
            (
                "apiVersion",
                version,
                &owner.api_version,
                "version must not be empty",
            ),
            ("kind", &owner.kind, &owner.kind, "must not be empty"),
            ("name", &owner.name, &owner.name, "must not be empty"),
            ("uid", &owner.uid, &owner.uid, "must not be empty"),
        ];
        for (field, checked, value, msg) in required {
            if checked.is_empty() {
                errs.push(FieldError::invalid(child(path, field), value.as_str(), msg));
            }
        }
        if owner.controller == Some(true) {
            let this = format!("{}/{}", owner.kind, owner.name);
            match &controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    Rendered(this.clone()),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                    ),
                )),
                None => controller = Some(this),
            }
        }
    }
    errs
}

const IMMUTABLE: &str = "field is immutable";

/// What may not change when an object is updated, and what the updated
/// metadata must have right. Expects the registry to have carried over
/// `uid` and `creationTimestamp` when the client left them out, as
/// kube-apiserver does.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    let path = "metadata";
    let mut errs = Vec::new();
    let immutable = [
        ("name", &new.name, &old.name),
        ("namespace", &new.namespace, &old.namespace),
        ("uid", &new.uid, &old.uid),
    ];
    for (field, new_value, old_value) in immutable {
        if new_value != old_value {
            let value = new_value.as_deref().unwrap_or("");
            errs.push(FieldError::invalid(child(path, field), value, IMMUTABLE));
        }
    }
    if new.creation_timestamp != old.creation_timestamp {
        let value = new
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        errs.push(FieldError::invalid(
            child(path, "creationTimestamp"),
            Rendered(value),
            IMMUTABLE,
        ));
    }
    let (new_generation, old_generation) =
        (new.generation.unwrap_or(0), old.generation.unwrap_or(0));
    if new_generation < old_generation {
        errs.push(FieldError::invalid(
            child(path, "generation"),
            new_generation,
            "must not be decremented",
        ));
    }
    errs.extend(validate_maps_and_references(new));
    errs
}

/// Label keys must be qualified names and values valid label values; errors
/// name the map (`metadata.labels`), as upstream does.
pub fn validate_labels(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (k, v) in labels {
        for msg in is_qualified_name(k) {
            errs.push(FieldError::invalid(path, k, msg));
        }
        for msg in is_valid_label_value(v) {
            errs.push(FieldError::invalid(path, v, msg));
        }
    }
    errs
}

/// Annotation keys must be qualified names (case-insensitively) and all
/// annotations together at most 256 KiB.
pub fn validate_annotations(annotations: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0;
    for (k, v) in annotations {
        for msg in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// A `metav1.LabelSelector` (Deployments, ReplicaSets, …).
pub fn validate_label_selector(selector: &LabelSelector, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let expressions_path = child(path, "matchExpressions");
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let path = index(&expressions_path, i);
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                child(&path, "values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                child(&path, "values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                child(&path, "operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for msg in is_qualified_name(&expr.key) {
            errs.push(FieldError::invalid(child(&path, "key"), &expr.key, msg));
        }
        let values_path = child(&path, "values");
        for (j, value) in values.iter().enumerate() {
            for msg in is_valid_label_value(value) {
                errs.push(FieldError::invalid(index(&values_path, j), value, msg));
            }
        }
    }
    if let Some(labels) = &selector.match_labels {
        errs.extend(validate_labels(labels, &child(path, "matchLabels")));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            ..Default::default()
        }
    }

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn name_rules() {
        assert!(NameRule::Dns1123Subdomain.check("web.v1", false).is_empty());
        assert!(!NameRule::Dns1035Label.check("1web", false).is_empty());
        assert!(NameRule::Dns1035Label.check("web-", true).is_empty());
        assert!(!NameRule::Dns1035Label.check("web-", false).is_empty());
        assert!(NameRule::PathSegment.check("UPPER.name", false).is_empty());
        assert_eq!(
            NameRule::PathSegment.check("..", false),
            ["may not be '..'"]
        );
        assert_eq!(
            NameRule::PathSegment.check("a/", true),
            ["may not contain '/'"]
        );
        for rule in [
            NameRule::Dns1123Subdomain,
            NameRule::Dns1123Label,
            NameRule::Dns1035Label,
        ] {
            for bad in ["..", ".", "a/b", "a%b", "UPPER"] {
                assert!(!rule.check(bad, false).is_empty(), "{rule:?} {bad}");
            }
        }
    }

    #[test]
    fn owner_references() {
        let owner = |api_version: &str, name: &str, controller: bool| OwnerReference {
            api_version: api_version.into(),
            kind: "ReplicaSet".into(),
            name: name.into(),
            uid: "u".into(),
            controller: Some(controller),
            ..Default::default()
        };
        let m = ObjectMeta {
            owner_references: Some(vec![
                owner("apps/v1", "a", true),
                owner("apps/", "", false),
                owner("apps/v1", "b", true),
            ]),
            ..meta("web", Some("default"))
        };
        assert_eq!(
            messages(&validate_object_meta(&m, true, NameRule::Dns1123Subdomain)),
            [
                "metadata.ownerReferences.apiVersion: Invalid value: \"apps/\": version must not be empty",
                "metadata.ownerReferences.name: Invalid value: \"\": must not be empty",
                "metadata.ownerReferences: Invalid value: ReplicaSet/b: Only one reference can have Controller set to true. Found \"true\" in references for ReplicaSet/a and ReplicaSet/b",
            ]
        );
    }

    #[test]
    fn invalid_service_name() {
        let errs = validate_object_meta(
            &meta("Web_1", Some("default")),
            true,
            NameRule::Dns1035Label,
        );
        assert_eq!(
            messages(&errs),
            [
                "metadata.name: Invalid value: \"Web_1\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn invalid_namespace_name() {
        let errs = validate_object_meta(&meta("Web_1", None), false, NameRule::Dns1123Label);
        assert_eq!(
            messages(&errs),
            [
                "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            ]
        );
    }

    #[test]
    fn name_namespace_and_generate_name() {
        let mut m = ObjectMeta {
            generate_name: Some("Web-".into()),
            ..Default::default()
        };
        let errs = validate_object_meta(&m, true, NameRule::Dns1123Subdomain);
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.generateName",
                "metadata.name",
                "metadata.namespace"
            ]
        );
        assert_eq!(
            errs[1].to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        assert_eq!(errs[2].to_string(), "metadata.namespace: Required value");

        m = meta("node1", Some("default"));
        let errs = validate_object_meta(&m, false, NameRule::Dns1123Subdomain);
        assert_eq!(
            messages(&errs),
            ["metadata.namespace: Forbidden: not allowed on this type"]
        );

        m = meta("web", Some("Bad_NS"));
        let errs = validate_object_meta(&m, true, NameRule::Dns1123Subdomain);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.namespace");

        m = ObjectMeta {
            generation: Some(-1),
            ..meta("web", Some("default"))
        };
        let errs = validate_object_meta(&m, true, NameRule::Dns1123Subdomain);
        assert_eq!(
            messages(&errs),
            ["metadata.generation: Invalid value: -1: must be greater than or equal to 0"]
        );
    }

    #[test]
    fn labels_annotations_finalizers() {
        let m = ObjectMeta {
            labels: Some(BTreeMap::from([
                ("app".into(), "web".into()),
                ("bad key!".into(), "ok".into()),
                ("tier".into(), "-front".into()),
            ])),
            annotations: Some(BTreeMap::from([
                ("Example.com/Note".into(), "x".repeat(10)),
                ("big".into(), "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)),
            ])),
            finalizers: Some(vec![
                "kubernetes.io/pvc-protection".into(),
                "bad/fin/alizer".into(),
            ]),
            ..meta("web", Some("default"))
        };
        let errs = validate_object_meta(&m, true, NameRule::Dns1123Subdomain);
        let summary: Vec<(&str, Option<&str>)> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.value.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                ("metadata.labels", Some("\"bad key!\"")),
                ("metadata.labels", Some("\"-front\"")),
                ("metadata.annotations", None),
                ("metadata.finalizers", Some("\"bad/fin/alizer\"")),
            ]
        );
        assert_eq!(
            errs[2].to_string(),
            "metadata.annotations: Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn immutable_metadata() {
        let old = ObjectMeta {
            uid: Some("u1".into()),
            generation: Some(3),
            ..meta("web", Some("default"))
        };
        assert!(validate_object_meta_update(&old, &old).is_empty());
        let new = ObjectMeta {
            uid: Some("u2".into()),
            generation: Some(2),
            labels: Some(BTreeMap::from([("a".into(), "b".into())])),
            ..meta("api", Some("default"))
        };
        assert_eq!(
            messages(&validate_object_meta_update(&new, &old)),
            [
                "metadata.name: Invalid value: \"api\": field is immutable",
                "metadata.uid: Invalid value: \"u2\": field is immutable",
                "metadata.generation: Invalid value: 2: must not be decremented",
            ]
        );
        let stamped: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "web", "namespace": "default", "uid": "u1", "generation": 3,
            "creationTimestamp": "2026-01-02T03:04:05Z"
        }))
        .unwrap();
        let errs = validate_object_meta_update(&stamped, &old);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "metadata.creationTimestamp");
    }

    #[test]
    fn label_selectors() {
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec![]),
                },
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "Exists".into(),
                    values: Some(vec!["x".into()]),
                },
                LabelSelectorRequirement {
                    key: "k".into(),
                    operator: "Like".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "-k".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["a b".into()]),
                },
            ]),
        };
        let errs = validate_label_selector(&selector, "spec.selector");
        assert_eq!(
            messages(&errs)[..3],
            [
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                "spec.selector.matchExpressions[2].operator: Invalid value: \"Like\": not a valid selector operator",
            ]
        );
        let fields: Vec<&str> = errs[3..].iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.selector.matchExpressions[3].key",
                "spec.selector.matchExpressions[3].values[0]"
            ]
        );

        let good = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            match_expressions: None,
        };
        assert!(validate_label_selector(&good, "spec.selector").is_empty());
    }
}
