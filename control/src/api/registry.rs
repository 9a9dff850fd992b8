//! The resources skiff-control serves: one table drives discovery, URL
//! routing and where each resource lives in etcd.

/// What the server does with an object's `.status` on create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusOnCreate {
    /// Stored as sent (nodes report their own status; most kinds have none).
    Keep,
    /// Replaced by the kind's initial status: a controller fills it later.
    Reset,
}

/// One served resource.
#[derive(Debug, PartialEq)]
pub struct Resource {
    /// API group; "" is the core (legacy) group under `/api`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Root of its keys in etcd (Kubernetes' own layout, exceptions
    /// included).
    pub storage: &'static str,
    /// Has a `/status` subresource (PUT there changes only `.status`).
    pub status: bool,
    pub status_on_create: StatusOnCreate,
    /// Field selector labels besides `metadata.name` and
    /// `metadata.namespace`, with the object path each one reads.
    pub fields: &'static [(&'static str, &'static [&'static str])],
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        group_version(self.group, self.version)
    }

    /// Whether this is the core (v1) `kind`, for the kinds with rules of
    /// their own.
    pub fn is_core(&self, kind: &str) -> bool {
        self.group.is_empty() && self.kind == kind
    }
}

pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// Verbs every resource supports.
pub const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
/// Verbs of a `/status` subresource.
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

const fn resource(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    storage: &'static str,
) -> Resource {
    Resource {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names: &[],
        storage,
        status: false,
        status_on_create: StatusOnCreate::Keep,
        fields: &[],
    }
}

const fn with_status(mut resource: Resource) -> Resource {
    resource.status = true;
    resource.status_on_create = StatusOnCreate::Reset;
    resource
}

const fn short(mut resource: Resource, names: &'static [&'static str]) -> Resource {
    resource.short_names = names;
    resource
}

const POD_FIELDS: &[(&str, &[&str])] = &[
    ("spec.nodeName", &["spec", "nodeName"]),
    ("spec.restartPolicy", &["spec", "restartPolicy"]),
    ("spec.schedulerName", &["spec", "schedulerName"]),
    ("spec.serviceAccountName", &["spec", "serviceAccountName"]),
    ("status.phase", &["status", "phase"]),
    ("status.podIP", &["status", "podIP"]),
];
const EVENT_FIELDS: &[(&str, &[&str])] = &[
    ("involvedObject.kind", &["involvedObject", "kind"]),
    ("involvedObject.name", &["involvedObject", "name"]),
    ("involvedObject.namespace", &["involvedObject", "namespace"]),
    ("involvedObject.uid", &["involvedObject", "uid"]),
    ("reason", &["reason"]),
    ("type", &["type"]),
];

/// Every served resource. Storage roots follow kube-apiserver (services
/// under `specs`, nodes as `minions`, ingresses as `ingress`), except that
/// `events.k8s.io` events have their own root: skiff stores each version's
/// JSON as sent and does not convert between the two event schemas.
pub static RESOURCES: &[Resource] = &[
    short(
        with_status(resource(
            "",
            "Namespace",
            "namespaces",
            "namespace",
            false,
            "/registry/namespaces",
        )),
        &["ns"],
    ),
    Resource {
        status_on_create: StatusOnCreate::Keep,
        fields: &[("spec.unschedulable", &["spec", "unschedulable"])],
        ..short(
            with_status(resource(
                "",
                "Node",
                "nodes",
                "node",
                false,
                "/registry/minions",
            )),
            &["no"],
        )
    },
    Resource {
        fields: POD_FIELDS,
        ..short(
            with_status(resource("", "Pod", "pods", "pod", true, "/registry/pods")),
            &["po"],
        )
    },
    short(
        with_status(resource(
            "",
            "Service",
            "services",
            "service",
            true,
            "/registry/services/specs",
        )),
        &["svc"],
    ),
    short(
        resource(
            "",
            "Endpoints",
            "endpoints",
            "endpoints",
            true,
            "/registry/services/endpoints",
        ),
        &["ep"],
    ),
    short(
        resource(
            "",
            "ConfigMap",
            "configmaps",
            "configmap",
            true,
            "/registry/configmaps",
        ),
        &["cm"],
    ),
    Resource {
        fields: &[("type", &["type"])],
        ..resource("", "Secret", "secrets", "secret", true, "/registry/secrets")
    },
    Resource {
        fields: EVENT_FIELDS,
        ..short(
            resource("", "Event", "events", "event", true, "/registry/events"),
            &["ev"],
        )
    },
    resource(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        "/registry/endpointslices",
    ),
    short(
        resource(
            "events.k8s.io",
            "Event",
            "events",
            "event",
            true,
            "/registry/events.k8s.io/events",
        ),
        &["ev"],
    ),
    short(
        with_status(resource(
            "apps",
            "Deployment",
            "deployments",
            "deployment",
            true,
            "/registry/deployments",
        )),
        &["deploy"],
    ),
    short(
        with_status(resource(
            "apps",
            "ReplicaSet",
            "replicasets",
            "replicaset",
            true,
            "/registry/replicasets",
        )),
        &["rs"],
    ),
    short(
        with_status(resource(
            "apps",
            "DaemonSet",
            "daemonsets",
            "daemonset",
            true,
            "/registry/daemonsets",
        )),
        &["ds"],
    ),
    short(
        with_status(resource(
            "apps",
            "StatefulSet",
            "statefulsets",
            "statefulset",
            true,
            "/registry/statefulsets",
        )),
        &["sts"],
    ),
    with_status(resource(
        "batch",
        "Job",
        "jobs",
        "job",
        true,
        "/registry/jobs",
    )),
    short(
        with_status(resource(
            "batch",
            "CronJob",
            "cronjobs",
            "cronjob",
            true,
            "/registry/cronjobs",
        )),
        &["cj"],
    ),
    short(
        with_status(resource(
            "networking.k8s.io",
            "Ingress",
            "ingresses",
            "ingress",
            true,
            "/registry/ingress",
        )),
        &["ing"],
    ),
    resource(
        "coordination.k8s.io",
        "Lease",
        "leases",
        "lease",
        true,
        "/registry/leases",
    ),
];

/// The resource `plural` of `group`/`version`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The served groups (core first), each with its one version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for resource in RESOURCES {
        if !groups.contains(&(resource.group, resource.version)) {
            groups.push((resource.group, resource.version));
        }
    }
    groups
}

/// The namespaces the server creates at start-up and that always exist.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (index, resource) in RESOURCES.iter().enumerate() {
            assert!(
                resource.storage.starts_with("/registry/"),
                "{}",
                resource.plural
            );
            assert!(!resource.storage.ends_with('/'), "{}", resource.plural);
            let same = RESOURCES[..index]
                .iter()
                .any(|r| r.group == resource.group && r.plural == resource.plural);
            assert!(!same, "{} listed twice", resource.plural);
        }
        assert_eq!(
            find("", "v1", "nodes").unwrap().storage,
            "/registry/minions"
        );
        assert_eq!(groups()[0], ("", "v1"));
        assert!(groups().contains(&("apps", "v1")));
        assert!(find("apps", "v1", "pods").is_none());
    }
}
