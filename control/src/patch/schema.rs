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
}
