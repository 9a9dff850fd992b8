//! List and watch of the pods bound to this node, straight from etcd
//! (`/registry/pods/<namespace>/<name>`, filtered on `spec.nodeName`).
//! skiff-etcd's list-then-watch re-lists on any trouble, so the consumer
//! always converges on what etcd holds.
use k8s_openapi::api::core::v1::Pod;
use skiff_etcd::keys::{PODS, collection_prefix, parse_namespaced};
use skiff_etcd::list_watch::{Change, Decoder, Event, ListWatch};
use tokio::sync::mpsc::Sender;

use super::pod_key::PodKey;

#[derive(Debug)]
pub enum PodEvent {
    /// Every pod of this node: what is not in it is gone.
    Resync(Vec<(PodKey, Pod)>),
    /// Changes in order: a pod to run, or `None` for one that is gone (or
    /// was moved off this node).
    Changes(Vec<(PodKey, Option<Box<Pod>>)>),
}

/// Follows this node's pods in the etcd at `endpoints` until the receiver
/// is gone.
pub async fn run(endpoints: Vec<String>, node: String, tx: Sender<PodEvent>) {
    let prefixes = vec![collection_prefix(PODS, None)];
    ListWatch::new(endpoints, prefixes, OnNode { node })
        .run(tx)
        .await
}

/// Reads pods; those bound elsewhere (or to no node yet) are `None`.
struct OnNode {
    node: String,
}

impl Decoder for OnNode {
    type Key = PodKey;
    type Value = Option<Pod>;

    fn key(&self, key: &[u8]) -> Option<PodKey> {
        PodKey::parse(key)
    }

    fn value(
        &self,
        key: &PodKey,
        value: &[u8],
        mod_revision: i64,
    ) -> Result<Option<Pod>, serde_json::Error> {
        let mut pod: Pod = serde_json::from_slice(value)?;
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(&self.node) {
            return Ok(None);
        }
        pod.metadata.namespace = Some(key.namespace.clone());
        pod.metadata.name = Some(key.name.clone());
        // As the API server reads it: the key's revision is its version.
        pod.metadata.resource_version = Some(mod_revision.to_string());
        Ok(Some(pod))
    }
}

impl From<Event<PodKey, Option<Pod>>> for PodEvent {
    fn from(event: Event<PodKey, Option<Pod>>) -> Self {
        match event {
            Event::Resync { objects, .. } => PodEvent::Resync(
                objects
                    .into_iter()
                    .filter_map(|(key, pod)| Some((key, pod?)))
                    .collect(),
            ),
            Event::Changes { changes, .. } => PodEvent::Changes(
                changes
                    .into_iter()
                    .map(|change| match change {
                        Change::Put(key, pod) => (key, pod.map(Box::new)),
                        Change::Delete(key) => (key, None),
                    })
                    .collect(),
            ),
        }
    }
}

impl PodKey {
    pub fn parse(key: &[u8]) -> Option<PodKey> {
        let (namespace, name) = parse_namespaced(PODS, key)?;
        Some(PodKey { namespace, name })
    }
}
