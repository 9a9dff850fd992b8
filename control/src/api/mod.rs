//! The Kubernetes REST API over the store: routing, discovery, the verbs,
//! and errors as `Status` objects. HTTP and TLS live in `server`.

mod aggregated_discovery;
mod bootstrap;
mod delete;
mod discovery;
mod dispatch;
mod field_manager;
mod field_validation;
mod handlers;
mod kubelet;
mod logs;
mod media;
mod metrics;
mod objects;
#[cfg(test)]
mod objects_properties;
mod openapi;
mod orphan;
mod path;
mod pod_row;
pub mod protobuf;
mod query;
mod registry;
mod reply;
mod request;
mod reviews;
mod scale;
mod selectors;
mod state;
mod status;
mod table;
mod token_request;
mod token_review;
mod version;
mod watch;

pub use crate::kinds::ServiceNetwork;
pub use field_manager::SERVER as SERVER_MANAGER;
pub use media::prefers_protobuf;
pub use query::{Query, parse_bool};
pub use registry::{SYSTEM_NAMESPACES, find as find_resource, stored_resources};
pub use reply::Reply;
pub use request::ApiRequest;
pub use state::{Api, ApiConfig};
pub use status::ApiError;
pub use version::GIT_VERSION;
// The fuzz targets' entries (fuzz/fuzz_targets/).
#[cfg(fuzzing)]
pub use objects::check_new_object;
#[cfg(fuzzing)]
pub use selectors::{FieldSelector, LabelSelector};

/// Every namespaced resource: its etcd root, its URL prefix (`/api/v1`,
/// `/apis/apps/v1`) and its plural (what namespace deletion empties).
pub fn namespaced_collections() -> Vec<(&'static str, String, &'static str)> {
    registry::RESOURCES
        .iter()
        .filter(|resource| resource.namespaced)
        .map(|resource| {
            let prefix = match resource.group {
                "" => format!("/api/{}", resource.version),
                group => format!("/apis/{group}/{}", resource.version),
            };
            (resource.storage, prefix, resource.plural)
        })
        .collect()
}
