//! The objects pods refer to (ConfigMaps, Secrets, claims and their
//! volumes), read by name through the API server as this node, which the
//! Node authorizer allows only for objects its pods name; or a fixed set
//! in tests.
use std::future::Future;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};
use serde_json::Value;

/// The kinds pods name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ConfigMap,
    Secret,
    Claim,
    /// Cluster-scoped: its namespace is ignored.
    Volume,
}

pub trait Objects: Sync {
    /// The object `namespace/name` of `kind`, if there is one.
    fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Value>, kube::Error>> + Send;
}

impl Objects for kube::Client {
    async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, kube::Error> {
        let client = self.clone();
        match kind {
            Kind::ConfigMap => json(
                kube::Api::<ConfigMap>::namespaced(client, namespace)
                    .get_opt(name)
                    .await?,
            ),
            Kind::Secret => json(
                kube::Api::<Secret>::namespaced(client, namespace)
                    .get_opt(name)
                    .await?,
            ),
            Kind::Claim => json(
                kube::Api::<PersistentVolumeClaim>::namespaced(client, namespace)
                    .get_opt(name)
                    .await?,
            ),
            Kind::Volume => json(
                kube::Api::<PersistentVolume>::all(client)
                    .get_opt(name)
                    .await?,
            ),
        }
    }
}

/// The object as the readers parse it.
fn json<T: serde::Serialize>(object: Option<T>) -> Result<Option<Value>, kube::Error> {
    object
        .map(serde_json::to_value)
        .transpose()
        .map_err(kube::Error::SerdeError)
}
