//! What each kind does beyond the generic verbs, one strategy per kind with
//! rules of its own, as kube-apiserver's registry strategies. The resource
//! table (`api::registry`) points each resource at its strategy; a new kind
//! is a strategy here and an entry there.

mod daemonset;
mod env;
mod generic;
mod namespace;
mod node;
mod pod;
mod pod_validation;
mod refusal;
mod scalable;
mod service;
mod statefulset;
mod storage;
mod strategy;
mod workload;

pub use daemonset::{DaemonSetStrategy, IntOrPercent};
pub use env::Env;
pub use generic::GenericStrategy;
pub use namespace::NamespaceStrategy;
pub use node::NodeStrategy;
pub use pod::PodStrategy;
pub use refusal::Refusal;
pub use scalable::ScalableStrategy;
pub use service::ServiceStrategy;
pub use service::pools::ServiceNetwork;
pub use statefulset::StatefulSetStrategy;
pub use storage::{
    DEFAULT_CLASS_ANNOTATION, LOCAL_PATH_CLASS, LOCAL_PATH_PROVISIONER, PV_PROTECTION,
    PVC_PROTECTION, PersistentVolumeClaimStrategy, PersistentVolumeStrategy,
    SELECTED_NODE_ANNOTATION, StorageClassStrategy, default_class,
};
pub use strategy::{Claim, Strategy, Subresource};
