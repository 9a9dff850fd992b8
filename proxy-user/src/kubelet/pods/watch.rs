//! List and watch of the pods bound to this node, straight from etcd
//! (`/registry/pods/<namespace>/<name>`, filtered on `spec.nodeName`). Any
//! trouble ends in a reconnect and a full re-list, so the consumer always
//! converges on what etcd holds.
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc::Sender;
use tracing::{info, warn};

use super::pod_key::PodKey;

const PODS_PREFIX: &str = "/registry/pods/";
const MAX_MESSAGE_BYTES: usize = 1 << 30;
const RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum PodEvent {
    /// Every pod of this node: what is not in it is gone.
    Resync(Vec<(PodKey, Pod)>),
    Upsert(PodKey, Box<Pod>),
    Delete(PodKey),
}

/// Follows this node's pods until the receiver is gone.
pub async fn run(client: Client, node: String, tx: Sender<PodEvent>) {
    let mut delay = Duration::from_millis(100);
    loop {
        match session(&client, &node, &tx, &mut delay).await {
            Ok(()) => return,
            Err(error) => {
                warn!(%error, retry_in = ?delay, "etcd pod list/watch interrupted; will re-list");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Ok when the receiver is gone; Err when etcd failed.
async fn session(
    client: &Client,
    node: &str,
    tx: &Sender<PodEvent>,
    delay: &mut Duration,
) -> Result<(), String> {
    let mut kv = client
        .kv_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let response = kv
        .get(PODS_PREFIX, Some(GetOptions::new().with_prefix()))
        .await
        .map_err(|e| format!("listing pods: {e}"))?;
    let revision = response.header().map_or(0, |h| h.revision());
    let pods: Vec<(PodKey, Pod)> = response
        .kvs()
        .iter()
        .filter_map(|kv| decode(kv.key(), kv.value()))
        .filter(|(_, pod)| on_node(pod, node))
        .collect();
    info!(
        revision,
        pods = pods.len(),
        "listed this node's pods from etcd"
    );
    if tx.send(PodEvent::Resync(pods)).await.is_err() {
        return Ok(());
    }
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut watch = client
        .watch_client()
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut stream = watch
        .watch(PODS_PREFIX, Some(options))
        .await
        .map_err(|e| format!("watching pods: {e}"))?;
    loop {
        let response = stream
            .message()
            .await
            .map_err(|e| format!("watching pods: {e}"))?
            .ok_or("etcd closed the pod watch")?;
        if response.canceled() || response.compact_revision() != 0 {
            return Err(format!(
                "the pod watch was canceled: {}",
                response.cancel_reason()
            ));
        }
        if response.created() {
            *delay = Duration::from_millis(100);
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let update = match event.event_type() {
                EventType::Put => match decode(kv.key(), kv.value()) {
                    Some((key, pod)) if on_node(&pod, node) => PodEvent::Upsert(key, Box::new(pod)),
                    Some((key, _)) => PodEvent::Delete(key),
                    None => continue,
                },
                EventType::Delete => match PodKey::parse(kv.key()) {
                    Some(key) => PodEvent::Delete(key),
                    None => continue,
                },
            };
            if tx.send(update).await.is_err() {
                return Ok(());
            }
        }
    }
}

fn on_node(pod: &Pod, node: &str) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
}

fn decode(key: &[u8], value: &[u8]) -> Option<(PodKey, Pod)> {
    let key = PodKey::parse(key)?;
    match serde_json::from_slice::<Pod>(value) {
        Ok(mut pod) => {
            pod.metadata.namespace = Some(key.namespace.clone());
            pod.metadata.name = Some(key.name.clone());
            Some((key, pod))
        }
        Err(error) => {
            warn!(pod = %key, %error, "skipping an undecodable pod");
            None
        }
    }
}

impl PodKey {
    pub fn parse(key: &[u8]) -> Option<PodKey> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(PODS_PREFIX)?;
        let (namespace, name) = rest.split_once('/')?;
        if namespace.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(PodKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn etcd_key(&self) -> String {
        format!("{PODS_PREFIX}{}/{}", self.namespace, self.name)
    }
}
