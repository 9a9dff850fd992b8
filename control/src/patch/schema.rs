//! The slice of Kubernetes' OpenAPI patch metadata (`x-kubernetes-patch-strategy`
//! and `x-kubernetes-patch-merge-key`) that strategic merge patch needs for the
//! kinds skiff serves. Lookups go by the path of field names from the object
//! root; list indices are not part of the path.

/// How a list field is combined with the list in a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// The patch's list replaces the original (the default for lists).
    Replace,
    /// Objects are matched by this key; matches merge, new ones are appended.
    MergeByKey(&'static str),
    /// Primitives are merged as a set: the patch's values not yet present are
    /// appended.
    MergeSet,
}

/// The merge key of the list at `path`, if it is merged by key.
pub fn merge_key(path: &[&str]) -> Option<&'static str> {
    match list_strategy(path) {
        ListStrategy::MergeByKey(key) => Some(key),
        ListStrategy::Replace | ListStrategy::MergeSet => None,
    }
}

/// How server-side apply treats the list at `path` (OpenAPI's
/// `x-kubernetes-list-type`), derived from its strategic merge strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// An associative list: elements are identified by the merge key and,
    /// where the API has more key fields, by these too.
    Map {
        key: &'static str,
        more: &'static [&'static str],
    },
    /// Elements are identified by their value.
    Set,
    /// The list is one value, replaced whole.
    Atomic,
}

impl ListType {
    /// The key fields of an element of an associative list.
    pub fn keys(self) -> impl Iterator<Item = &'static str> {
        let (key, more): (Option<&'static str>, &'static [&'static str]) = match self {
            ListType::Map { key, more } => (Some(key), more),
            ListType::Set | ListType::Atomic => (None, &[]),
        };
        key.into_iter().chain(more.iter().copied())
    }
}

/// The server-side apply list type at `path`. Ports are keyed by number and
/// protocol, spread constraints by key and policy, as the API declares.
pub fn list_type(path: &[&str]) -> ListType {
    match list_strategy(path) {
        ListStrategy::MergeByKey(key @ ("containerPort" | "port")) => ListType::Map {
            key,
            more: &["protocol"],
        },
        ListStrategy::MergeByKey(key @ "topologyKey") => ListType::Map {
            key,
            more: &["whenUnsatisfiable"],
        },
        ListStrategy::MergeByKey(key) => ListType::Map { key, more: &[] },
        ListStrategy::MergeSet => ListType::Set,
        ListStrategy::Replace => ListType::Atomic,
    }
}

/// The value the API defaults a missing key field to (ports' protocol).
pub fn key_default(field: &str) -> Option<&'static str> {
    (field == "protocol").then_some("TCP")
}

/// The strategy for the list at `path`.
///
/// Pod specs are nested at different depths (pods, pod templates in
/// workloads, job templates in cronjobs), so container-level fields are
/// recognised by their parent field rather than by the full path.
pub fn list_strategy(path: &[&str]) -> ListStrategy {
    use ListStrategy::{MergeByKey, MergeSet, Replace};
    let Some((&field, parents)) = path.split_last() else {
        return Replace;
    };
    let parent = parents.last().copied();
    let in_container = matches!(
        parent,
        Some("containers" | "initContainers" | "ephemeralContainers")
    );
    match field {
        "containers" | "initContainers" | "ephemeralContainers" => MergeByKey("name"),
        "ports" if in_container => MergeByKey("containerPort"),
        // A Service's ports: `spec.ports` at the root of the object.
        "ports" if parents == ["spec"] => MergeByKey("port"),
        "env" if in_container => MergeByKey("name"),
        "volumeMounts" if in_container => MergeByKey("mountPath"),
        "volumeDevices" if in_container => MergeByKey("devicePath"),
        "volumes" if parent == Some("spec") => MergeByKey("name"),
        "imagePullSecrets" => MergeByKey("name"),
        "conditions" => MergeByKey("type"),
        "hostAliases" => MergeByKey("ip"),
        "topologySpreadConstraints" => MergeByKey("topologyKey"),
        "ownerReferences" if parent == Some("metadata") => MergeByKey("uid"),
        "finalizers" if parent == Some("metadata") => MergeSet,
        _ => Replace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_fields_at_any_depth() {
        for containers in [
            &["spec", "containers"][..],
            &["spec", "template", "spec", "initContainers"],
            &[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "ephemeralContainers",
            ],
        ] {
            assert_eq!(merge_key(containers), Some("name"));
            let mut path = containers.to_vec();
            for (field, key) in [
                ("ports", "containerPort"),
                ("env", "name"),
                ("volumeMounts", "mountPath"),
                ("volumeDevices", "devicePath"),
            ] {
                path.push(field);
                assert_eq!(merge_key(&path), Some(key), "{path:?}");
                path.pop();
            }
        }
    }

    #[test]
    fn object_level_fields() {
        assert_eq!(merge_key(&["spec", "ports"]), Some("port"));
        assert_eq!(
            merge_key(&["spec", "template", "spec", "volumes"]),
            Some("name")
        );
        assert_eq!(merge_key(&["spec", "imagePullSecrets"]), Some("name"));
        assert_eq!(merge_key(&["status", "conditions"]), Some("type"));
        assert_eq!(merge_key(&["spec", "hostAliases"]), Some("ip"));
        assert_eq!(
            merge_key(&["spec", "template", "spec", "topologySpreadConstraints"]),
            Some("topologyKey")
        );
        assert_eq!(merge_key(&["metadata", "ownerReferences"]), Some("uid"));
        assert_eq!(
            list_strategy(&["metadata", "finalizers"]),
            ListStrategy::MergeSet
        );
    }

    #[test]
    fn everything_else_is_replaced() {
        assert_eq!(
            list_strategy(&["spec", "tolerations"]),
            ListStrategy::Replace
        );
        assert_eq!(
            list_strategy(&["spec", "externalIPs"]),
            ListStrategy::Replace
        );
        // EndpointSlice ports sit at the root and have no merge key.
        assert_eq!(list_strategy(&["ports"]), ListStrategy::Replace);
        assert_eq!(
            list_strategy(&["spec", "containers", "args"]),
            ListStrategy::Replace
        );
        assert_eq!(list_strategy(&[]), ListStrategy::Replace);
    }

    #[test]
    fn apply_list_types() {
        let ports = list_type(&["spec", "containers", "ports"]);
        assert_eq!(
            ports.keys().collect::<Vec<_>>(),
            ["containerPort", "protocol"]
        );
        assert_eq!(
            list_type(&["spec", "ports"]).keys().collect::<Vec<_>>(),
            ["port", "protocol"]
        );
        assert_eq!(
            list_type(&["spec", "containers"])
                .keys()
                .collect::<Vec<_>>(),
            ["name"]
        );
        assert_eq!(list_type(&["metadata", "finalizers"]), ListType::Set);
        assert_eq!(list_type(&["spec", "containers", "args"]), ListType::Atomic);
    }
}
