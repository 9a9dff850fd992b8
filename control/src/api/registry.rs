//! The resources skiff-control serves: one table drives discovery, URL
//! routing, OpenAPI, field validation and where each resource lives in etcd.

use k8s_openapi::api::{
    apps, batch, certificates, coordination, core, discovery, events, networking, rbac, storage,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use skiff_etcd::keys;

use crate::kinds::{
    BindingStrategy, CronJobStrategy, DeploymentStrategy, GenericStrategy, IngressClassStrategy,
    IngressStrategy, JobStrategy, LimitRangeStrategy, NamespaceStrategy, NodeStrategy,
    PersistentVolumeClaimStrategy, PersistentVolumeStrategy, PodStrategy,
    ReplicationControllerStrategy, ResourceQuotaStrategy, RoleStrategy, ScalableStrategy,
    ServiceAccountStrategy, ServiceStrategy, StatefulSetStrategy, StorageClassStrategy, Strategy,
    Subresource,
};
use crate::kinds::{CertificateSigningRequestStrategy, DaemonSetStrategy};
use crate::store::encryption::StoredResource;
use crate::validation::{NameRule, UnknownField, strip_unknown_fields};

/// What the resource's k8s-openapi type gives: its OpenAPI schema and the
/// fields an object has that the type does not declare.
#[derive(Debug, Clone, Copy)]
pub struct Typed {
    /// The schema's name in `components.schemas`, e.g.
    /// `io.k8s.api.core.v1.Service`.
    pub schema_name: fn() -> std::borrow::Cow<'static, str>,
    /// Adds the type's schema, and those it refers to, to the generator.
    pub schema: fn(&mut SchemaGenerator) -> Schema,
    /// Removes the fields the type does not declare and names them; fails
    /// when the object does not decode as the type.
    pub strip_unknown_fields: fn(&mut Value) -> Result<Vec<UnknownField>, serde_json::Error>,
    /// `status` with the fields the type always has (Go's non-`omitempty`
    /// fields, e.g. a ReplicaSet's `replicas: 0`) filled in, as
    /// kube-apiserver serializes it; clients that decode strictly need them.
    pub complete_status: fn(Value) -> Value,
}

impl Typed {
    const fn of<T: JsonSchema + DeserializeOwned + Serialize>() -> Self {
        Self {
            schema_name: T::schema_name,
            schema: SchemaGenerator::subschema_for::<T>,
            strip_unknown_fields: strip_unknown_fields::<T>,
            complete_status: complete_status::<T>,
        }
    }
}

/// `status` as the type `T` serializes it; unchanged when it does not
/// decode (then validation refuses the object anyway).
fn complete_status<T: DeserializeOwned + Serialize>(status: Value) -> Value {
    let object = serde_json::json!({ "metadata": {}, "status": status });
    serde_json::from_value::<T>(object)
        .and_then(serde_json::to_value)
        .ok()
        .and_then(|mut typed| typed.get_mut("status").map(Value::take))
        .unwrap_or(status)
}

/// One served resource.
#[derive(Debug)]
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
    /// What the kind does beyond the generic verbs: defaults, validation,
    /// allocations, status handling, deletion, subresources.
    pub strategy: &'static dyn Strategy,
    /// Field selector labels besides `metadata.name` and
    /// `metadata.namespace`, with the object path each one reads.
    pub fields: &'static [(&'static str, &'static [&'static str])],
    pub typed: Typed,
    /// The rule its names follow (the name function of the kind's
    /// validation upstream).
    pub names: NameRule,
    /// A DELETE that removes the object answers with it rather than a
    /// `Status` (the registry's `ReturnDeletedObject`).
    pub returns_deleted: bool,
    /// Serves `deletecollection` (DELETE on the collection).
    pub deletes_collections: bool,
}

/// A resource is its group, version and plural.
impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        group_version(self.group, self.version)
    }

    /// Serves `subresource`.
    pub fn serves(&self, subresource: Subresource) -> bool {
        self.strategy.serves(subresource)
    }

    /// The verbs discovery lists for the resource itself.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.deletes_collections {
            VERBS
        } else {
            VERBS_WITHOUT_COLLECTION_DELETE
        }
    }
}

pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// Verbs of a resource.
const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Verbs of a resource without `deletecollection` (namespaces, services).
const VERBS_WITHOUT_COLLECTION_DELETE: &[&str] = &[
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
    typed: Typed,
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
        strategy: &GenericStrategy::PLAIN,
        fields: &[],
        typed,
        names: NameRule::Dns1123Subdomain,
        returns_deleted: false,
        deletes_collections: true,
    }
}

const fn with_strategy(strategy: &'static dyn Strategy, mut resource: Resource) -> Resource {
    resource.strategy = strategy;
    resource
}

/// A kind whose DELETE answers with the removed object.
const fn returning_deleted(mut resource: Resource) -> Resource {
    resource.returns_deleted = true;
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
    Resource {
        names: NameRule::Dns1123Label,
        deletes_collections: false,
        ..short(
            with_strategy(
                &NamespaceStrategy,
                resource(
                    "",
                    "Namespace",
                    "namespaces",
                    "namespace",
                    false,
                    keys::NAMESPACES,
                    Typed::of::<core::v1::Namespace>(),
                ),
            ),
            &["ns"],
        )
    },
    Resource {
        fields: &[("spec.unschedulable", &["spec", "unschedulable"])],
        ..short(
            with_strategy(
                &NodeStrategy,
                resource(
                    "",
                    "Node",
                    "nodes",
                    "node",
                    false,
                    keys::NODES,
                    Typed::of::<core::v1::Node>(),
                ),
            ),
            &["no"],
        )
    },
    Resource {
        fields: POD_FIELDS,
        ..short(
            with_strategy(
                &PodStrategy,
                returning_deleted(resource(
                    "",
                    "Pod",
                    "pods",
                    "pod",
                    true,
                    keys::PODS,
                    Typed::of::<core::v1::Pod>(),
                )),
            ),
            &["po"],
        )
    },
    Resource {
        names: NameRule::Dns1035Label,
        deletes_collections: false,
        ..short(
            with_strategy(
                &ServiceStrategy,
                returning_deleted(resource(
                    "",
                    "Service",
                    "services",
                    "service",
                    true,
                    keys::SERVICES,
                    Typed::of::<core::v1::Service>(),
                )),
            ),
            &["svc"],
        )
    },
    short(
        resource(
            "",
            "Endpoints",
            "endpoints",
            "endpoints",
            true,
            keys::ENDPOINTS,
            Typed::of::<core::v1::Endpoints>(),
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
            keys::CONFIG_MAPS,
            Typed::of::<core::v1::ConfigMap>(),
        ),
        &["cm"],
    ),
    short(
        with_strategy(
            &ServiceAccountStrategy,
            resource(
                "",
                "ServiceAccount",
                "serviceaccounts",
                "serviceaccount",
                true,
                keys::SERVICE_ACCOUNTS,
                Typed::of::<core::v1::ServiceAccount>(),
            ),
        ),
        &["sa"],
    ),
    Resource {
        fields: &[("type", &["type"])],
        ..resource(
            "",
            "Secret",
            "secrets",
            "secret",
            true,
            keys::SECRETS,
            Typed::of::<core::v1::Secret>(),
        )
    },
    short(
        with_strategy(
            &PersistentVolumeStrategy,
            returning_deleted(resource(
                "",
                "PersistentVolume",
                "persistentvolumes",
                "persistentvolume",
                false,
                keys::PERSISTENT_VOLUMES,
                Typed::of::<core::v1::PersistentVolume>(),
            )),
        ),
        &["pv"],
    ),
    short(
        with_strategy(
            &PersistentVolumeClaimStrategy,
            returning_deleted(resource(
                "",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                "persistentvolumeclaim",
                true,
                keys::PERSISTENT_VOLUME_CLAIMS,
                Typed::of::<core::v1::PersistentVolumeClaim>(),
            )),
        ),
        &["pvc"],
    ),
    short(
        with_strategy(
            &ResourceQuotaStrategy,
            resource(
                "",
                "ResourceQuota",
                "resourcequotas",
                "resourcequota",
                true,
                keys::RESOURCE_QUOTAS,
                Typed::of::<core::v1::ResourceQuota>(),
            ),
        ),
        &["quota"],
    ),
    short(
        with_strategy(
            &LimitRangeStrategy,
            resource(
                "",
                "LimitRange",
                "limitranges",
                "limitrange",
                true,
                keys::LIMIT_RANGES,
                Typed::of::<core::v1::LimitRange>(),
            ),
        ),
        &["limits"],
    ),
    short(
        with_strategy(
            &ReplicationControllerStrategy,
            resource(
                "",
                "ReplicationController",
                "replicationcontrollers",
                "replicationcontroller",
                true,
                keys::REPLICATION_CONTROLLERS,
                Typed::of::<core::v1::ReplicationController>(),
            ),
        ),
        &["rc"],
    ),
    Resource {
        fields: EVENT_FIELDS,
        names: NameRule::PathSegment,
        ..short(
            resource(
                "",
                "Event",
                "events",
                "event",
                true,
                keys::EVENTS,
                Typed::of::<core::v1::Event>(),
            ),
            &["ev"],
        )
    },
    resource(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        keys::ENDPOINT_SLICES,
        Typed::of::<discovery::v1::EndpointSlice>(),
    ),
    short(
        resource(
            "events.k8s.io",
            "Event",
            "events",
            "event",
            true,
            keys::EVENTS_K8S_IO,
            Typed::of::<events::v1::Event>(),
        ),
        &["ev"],
    ),
    short(
        with_strategy(
            &DeploymentStrategy,
            resource(
                "apps",
                "Deployment",
                "deployments",
                "deployment",
                true,
                keys::DEPLOYMENTS,
                Typed::of::<apps::v1::Deployment>(),
            ),
        ),
        &["deploy"],
    ),
    short(
        with_strategy(
            &ScalableStrategy,
            resource(
                "apps",
                "ReplicaSet",
                "replicasets",
                "replicaset",
                true,
                keys::REPLICA_SETS,
                Typed::of::<apps::v1::ReplicaSet>(),
            ),
        ),
        &["rs"],
    ),
    short(
        with_strategy(
            &DaemonSetStrategy,
            resource(
                "apps",
                "DaemonSet",
                "daemonsets",
                "daemonset",
                true,
                keys::DAEMON_SETS,
                Typed::of::<apps::v1::DaemonSet>(),
            ),
        ),
        &["ds"],
    ),
    short(
        with_strategy(
            &StatefulSetStrategy,
            resource(
                "apps",
                "StatefulSet",
                "statefulsets",
                "statefulset",
                true,
                keys::STATEFUL_SETS,
                Typed::of::<apps::v1::StatefulSet>(),
            ),
        ),
        &["sts"],
    ),
    resource(
        "apps",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        keys::CONTROLLER_REVISIONS,
        Typed::of::<apps::v1::ControllerRevision>(),
    ),
    with_strategy(
        &JobStrategy,
        resource(
            "batch",
            "Job",
            "jobs",
            "job",
            true,
            keys::JOBS,
            Typed::of::<batch::v1::Job>(),
        ),
    ),
    short(
        with_strategy(
            &CronJobStrategy,
            resource(
                "batch",
                "CronJob",
                "cronjobs",
                "cronjob",
                true,
                keys::CRON_JOBS,
                Typed::of::<batch::v1::CronJob>(),
            ),
        ),
        &["cj"],
    ),
    short(
        with_strategy(
            &IngressStrategy,
            resource(
                "networking.k8s.io",
                "Ingress",
                "ingresses",
                "ingress",
                true,
                keys::INGRESSES,
                Typed::of::<networking::v1::Ingress>(),
            ),
        ),
        &["ing"],
    ),
    with_strategy(
        &IngressClassStrategy,
        resource(
            "networking.k8s.io",
            "IngressClass",
            "ingressclasses",
            "ingressclass",
            false,
            keys::INGRESS_CLASSES,
            Typed::of::<networking::v1::IngressClass>(),
        ),
    ),
    short(
        with_strategy(
            &StorageClassStrategy,
            returning_deleted(resource(
                "storage.k8s.io",
                "StorageClass",
                "storageclasses",
                "storageclass",
                false,
                keys::STORAGE_CLASSES,
                Typed::of::<storage::v1::StorageClass>(),
            )),
        ),
        &["sc"],
    ),
    Resource {
        names: NameRule::PathSegment,
        ..with_strategy(
            &RoleStrategy { namespaced: true },
            resource(
                "rbac.authorization.k8s.io",
                "Role",
                "roles",
                "role",
                true,
                keys::ROLES,
                Typed::of::<rbac::v1::Role>(),
            ),
        )
    },
    Resource {
        names: NameRule::PathSegment,
        ..with_strategy(
            &RoleStrategy { namespaced: false },
            resource(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                "clusterroles",
                "clusterrole",
                false,
                keys::CLUSTER_ROLES,
                Typed::of::<rbac::v1::ClusterRole>(),
            ),
        )
    },
    Resource {
        names: NameRule::PathSegment,
        ..with_strategy(
            &BindingStrategy { namespaced: true },
            resource(
                "rbac.authorization.k8s.io",
                "RoleBinding",
                "rolebindings",
                "rolebinding",
                true,
                keys::ROLE_BINDINGS,
                Typed::of::<rbac::v1::RoleBinding>(),
            ),
        )
    },
    Resource {
        names: NameRule::PathSegment,
        ..with_strategy(
            &BindingStrategy { namespaced: false },
            resource(
                "rbac.authorization.k8s.io",
                "ClusterRoleBinding",
                "clusterrolebindings",
                "clusterrolebinding",
                false,
                keys::CLUSTER_ROLE_BINDINGS,
                Typed::of::<rbac::v1::ClusterRoleBinding>(),
            ),
        )
    },
    resource(
        "coordination.k8s.io",
        "Lease",
        "leases",
        "lease",
        true,
        keys::LEASES,
        Typed::of::<coordination::v1::Lease>(),
    ),
    Resource {
        // Kubernetes does not care what requests are called.
        names: NameRule::PathSegment,
        fields: &[("spec.signerName", &["spec", "signerName"])],
        ..short(
            with_strategy(
                &CertificateSigningRequestStrategy,
                resource(
                    "certificates.k8s.io",
                    "CertificateSigningRequest",
                    "certificatesigningrequests",
                    "certificatesigningrequest",
                    false,
                    keys::CERTIFICATE_SIGNING_REQUESTS,
                    Typed::of::<certificates::v1::CertificateSigningRequest>(),
                ),
            ),
            &["csr"],
        )
    },
];

/// The resource `plural` of `group`/`version`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Every stored resource, for what an EncryptionConfiguration may name.
pub fn stored_resources() -> Vec<StoredResource> {
    RESOURCES
        .iter()
        .map(|resource| StoredResource {
            group: resource.group,
            plural: resource.plural,
            storage: resource.storage,
        })
        .collect()
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
    use serde_json::json;

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

    #[test]
    fn strategies_serve_their_subresources() {
        let pods = find("", "v1", "pods").unwrap();
        assert!(pods.serves(Subresource::Log) && pods.serves(Subresource::Binding));
        assert!(!pods.serves(Subresource::Scale));
        assert!(
            find("", "v1", "replicationcontrollers")
                .unwrap()
                .serves(Subresource::Scale)
        );
        for plural in ["deployments", "replicasets", "statefulsets"] {
            assert!(
                find("apps", "v1", plural)
                    .unwrap()
                    .serves(Subresource::Scale)
            );
        }
        assert!(
            !find("apps", "v1", "daemonsets")
                .unwrap()
                .serves(Subresource::Scale)
        );
        let nodes = find("", "v1", "nodes").unwrap();
        assert!(nodes.serves(Subresource::Status));
        assert_eq!(nodes.strategy.initial_status(), None);
        let replica_sets = find("apps", "v1", "replicasets").unwrap();
        assert_eq!(
            (replica_sets.typed.complete_status)(json!({})),
            json!({ "replicas": 0 })
        );
        let config_maps = find("", "v1", "configmaps").unwrap();
        assert!(!config_maps.serves(Subresource::Status));
        assert!(!config_maps.strategy.keeps_status_on_update());
    }
}
