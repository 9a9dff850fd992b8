//! The kinds the controllers and the scheduler read and write: where each
//! lives in etcd and on the API's URLs.

use skiff_etcd::keys;

/// One kind of object the controllers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    Endpoints,
    EndpointSlice,
    ReplicaSet,
    ReplicationController,
    Deployment,
    StatefulSet,
    DaemonSet,
    ControllerRevision,
    Job,
    CronJob,
    Lease,
    Event,
    PersistentVolume,
    PersistentVolumeClaim,
    StorageClass,
    ResourceQuota,
    Secret,
    ServiceAccount,
    ConfigMap,
    Ingress,
    IngressClass,
    ClusterRole,
    CertificateSigningRequest,
}

impl Kind {
    /// Root of the kind's keys in etcd (as `api::registry` has them).
    pub fn storage(self) -> &'static str {
        match self {
            Self::Namespace => keys::NAMESPACES,
            Self::Node => keys::NODES,
            Self::Pod => keys::PODS,
            Self::Service => keys::SERVICES,
            Self::Endpoints => keys::ENDPOINTS,
            Self::EndpointSlice => keys::ENDPOINT_SLICES,
            Self::ReplicaSet => keys::REPLICA_SETS,
            Self::ReplicationController => keys::REPLICATION_CONTROLLERS,
            Self::Deployment => keys::DEPLOYMENTS,
            Self::StatefulSet => keys::STATEFUL_SETS,
            Self::DaemonSet => keys::DAEMON_SETS,
            Self::ControllerRevision => keys::CONTROLLER_REVISIONS,
            Self::Job => keys::JOBS,
            Self::CronJob => keys::CRON_JOBS,
            Self::Lease => keys::LEASES,
            Self::Event => keys::EVENTS,
            Self::PersistentVolume => keys::PERSISTENT_VOLUMES,
            Self::PersistentVolumeClaim => keys::PERSISTENT_VOLUME_CLAIMS,
            Self::StorageClass => keys::STORAGE_CLASSES,
            Self::ResourceQuota => keys::RESOURCE_QUOTAS,
            Self::Secret => keys::SECRETS,
            Self::ServiceAccount => keys::SERVICE_ACCOUNTS,
            Self::ConfigMap => keys::CONFIG_MAPS,
            Self::Ingress => keys::INGRESSES,
            Self::IngressClass => keys::INGRESS_CLASSES,
            Self::ClusterRole => keys::CLUSTER_ROLES,
            Self::CertificateSigningRequest => keys::CERTIFICATE_SIGNING_REQUESTS,
        }
    }

    /// `/api/v1` or `/apis/<group>/v1`.
    fn group_path(self) -> &'static str {
        match self {
            Self::EndpointSlice => "/apis/discovery.k8s.io/v1",
            Self::ReplicaSet
            | Self::Deployment
            | Self::StatefulSet
            | Self::DaemonSet
            | Self::ControllerRevision => "/apis/apps/v1",
            Self::Job | Self::CronJob => "/apis/batch/v1",
            Self::Lease => "/apis/coordination.k8s.io/v1",
            Self::StorageClass => "/apis/storage.k8s.io/v1",
            Self::Ingress | Self::IngressClass => "/apis/networking.k8s.io/v1",
            Self::ClusterRole => "/apis/rbac.authorization.k8s.io/v1",
            Self::CertificateSigningRequest => "/apis/certificates.k8s.io/v1",
            _ => "/api/v1",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Self::Namespace => "namespaces",
            Self::Node => "nodes",
            Self::Pod => "pods",
            Self::Service => "services",
            Self::Endpoints => "endpoints",
            Self::EndpointSlice => "endpointslices",
            Self::ReplicaSet => "replicasets",
            Self::ReplicationController => "replicationcontrollers",
            Self::Deployment => "deployments",
            Self::StatefulSet => "statefulsets",
            Self::DaemonSet => "daemonsets",
            Self::ControllerRevision => "controllerrevisions",
            Self::Job => "jobs",
            Self::CronJob => "cronjobs",
            Self::Lease => "leases",
            Self::Event => "events",
            Self::PersistentVolume => "persistentvolumes",
            Self::PersistentVolumeClaim => "persistentvolumeclaims",
            Self::StorageClass => "storageclasses",
            Self::ResourceQuota => "resourcequotas",
            Self::Secret => "secrets",
            Self::ServiceAccount => "serviceaccounts",
            Self::ConfigMap => "configmaps",
            Self::Ingress => "ingresses",
            Self::IngressClass => "ingressclasses",
            Self::ClusterRole => "clusterroles",
            Self::CertificateSigningRequest => "certificatesigningrequests",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Self::Namespace
                | Self::Node
                | Self::PersistentVolume
                | Self::StorageClass
                | Self::IngressClass
                | Self::ClusterRole
                | Self::CertificateSigningRequest
        )
    }

    /// The kind named by an ownerReference's `apiVersion` and `kind`.
    pub fn of_reference(api_version: &str, kind: &str) -> Option<Self> {
        Some(match (api_version, kind) {
            ("v1", "Service") => Self::Service,
            ("v1", "Pod") => Self::Pod,
            ("v1", "Node") => Self::Node,
            ("v1", "ReplicationController") => Self::ReplicationController,
            ("apps/v1", "ReplicaSet") => Self::ReplicaSet,
            ("apps/v1", "Deployment") => Self::Deployment,
            ("apps/v1", "StatefulSet") => Self::StatefulSet,
            ("apps/v1", "DaemonSet") => Self::DaemonSet,
            ("apps/v1", "ControllerRevision") => Self::ControllerRevision,
            ("batch/v1", "Job") => Self::Job,
            ("batch/v1", "CronJob") => Self::CronJob,
            _ => return None,
        })
    }

    /// The URL of the collection (`name` None) or of one object.
    pub fn path(self, namespace: Option<&str>, name: Option<&str>) -> String {
        let mut path = self.group_path().to_owned();
        if let (true, Some(namespace)) = (self.namespaced(), namespace) {
            path.push_str("/namespaces/");
            path.push_str(namespace);
        }
        path.push('/');
        path.push_str(self.plural());
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_the_api() {
        assert_eq!(
            Kind::Pod.path(Some("a"), Some("p")),
            "/api/v1/namespaces/a/pods/p"
        );
        assert_eq!(Kind::Node.path(None, Some("n1")), "/api/v1/nodes/n1");
        assert_eq!(
            Kind::ReplicaSet.path(Some("a"), None),
            "/apis/apps/v1/namespaces/a/replicasets"
        );
    }
}
