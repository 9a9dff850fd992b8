//! What each kind does beyond the generic verbs, one strategy per kind with
//! rules of its own, as kube-apiserver's registry strategies. The resource
//! table (`api::registry`) points each resource at its strategy; a new kind
//! is a strategy here and an entry there.

mod batch;
pub mod certificates;
mod daemonset;
mod default_class;
mod deployment;
mod env;
mod generic;
mod ingress;
mod namespace;
mod node;
mod pod;
mod pod_validation;
mod quota;
mod rbac;
mod refusal;
mod replication_controller;
mod scalable;
mod service;
mod serviceaccount;
mod statefulset;
mod storage;
mod strategy;
mod workload;

pub use batch::{CONTROLLER_UID_LABEL, CronJobStrategy, JOB_NAME_LABEL, JobStrategy, Schedule};
pub use certificates::CertificateSigningRequestStrategy;
pub use daemonset::{DaemonSetStrategy, IntOrPercent};
pub use deployment::DeploymentStrategy;
pub use env::Env;
pub use generic::GenericStrategy;
pub use ingress::{
    DEFAULT_INGRESS_CLASS_ANNOTATION, INGRESS_CLASS_ANNOTATION, INGRESS_SERVICE_NAME,
    INGRESS_SERVICE_NAMESPACE, IngressClassStrategy, IngressStrategy, SKIFF_INGRESS_CLASS,
    SKIFF_INGRESS_CONTROLLER, default_ingress_class,
};
pub use namespace::NamespaceStrategy;
pub use node::NodeStrategy;
pub use pod::PodStrategy;
pub use quota::{LimitRangeStrategy, ResourceQuotaStrategy};
pub use rbac::{BindingStrategy, RoleStrategy};
pub use refusal::Refusal;
pub use replication_controller::ReplicationControllerStrategy;
pub use scalable::ScalableStrategy;
pub use service::ServiceStrategy;
pub use service::pools::{Holdings, ServiceNetwork};
pub use serviceaccount::ServiceAccountStrategy;
pub use statefulset::StatefulSetStrategy;
pub use storage::{
    DEFAULT_CLASS_ANNOTATION, LOCAL_PATH_CLASS, LOCAL_PATH_PROVISIONER, PV_PROTECTION,
    PVC_PROTECTION, PersistentVolumeClaimStrategy, PersistentVolumeStrategy,
    SELECTED_NODE_ANNOTATION, StorageClassStrategy, default_class,
};
pub use strategy::{Claim, Strategy, Subresource};
