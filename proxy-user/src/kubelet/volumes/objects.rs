//! Where volumes read the objects they project or mount (ConfigMaps,
//! Secrets, claims and their volumes): etcd through the kubelet's store,
//! or a fixed set in tests.
use std::future::Future;

use serde_json::Value;

use crate::kubelet::store::{Store, StoreError};

pub trait Objects: Sync {
    /// The object stored at an etcd key (`skiff_etcd::keys`), if any.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Value>, StoreError>> + Send;
}

impl Objects for Store {
    async fn get(&self, key: &str) -> Result<Option<Value>, StoreError> {
        Ok(Store::get(self, key).await?.map(|stored| stored.object))
    }
}
