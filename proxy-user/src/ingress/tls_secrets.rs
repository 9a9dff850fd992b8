//! The TLS Secrets the served Ingresses name, read by name through the API
//! server as the node (the Node authorizer lets a node get a Secret some
//! Ingress names, nothing more): read again whenever the Ingresses change
//! and once their TTL has passed (`--ingress-secret-ttl`, a minute as the
//! kubelet's Secret manager's), so a renewed certificate is picked up. A Secret that cannot be read is logged with
//! the Ingresses naming it and keeps what was read of it before.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use tokio::sync::watch;
use tracing::warn;

use super::objects::{ObjectRef, SecretRecord};
use super::table::served;
use super::watch::Objects;
use crate::apiserver::Connection;

/// Each Secret wanted, with the Ingresses naming it.
pub type Wanted = BTreeMap<ObjectRef, BTreeSet<ObjectRef>>;

/// The Secrets the Ingresses of `class` name in their `tls` sections.
pub fn wanted(objects: &Objects, class: &str) -> Wanted {
    let mut wanted = Wanted::new();
    for (id, ingress) in served(objects, class) {
        for name in ingress.tls.iter().filter_map(|tls| tls.secret.as_ref()) {
            let secret = ObjectRef {
                namespace: id.namespace.clone(),
                name: name.clone(),
            };
            wanted.entry(secret).or_default().insert(id.clone());
        }
    }
    wanted
}

/// Reads the wanted Secrets each time they change and every `ttl`,
/// publishing what was read on `read`, until `wanted`'s sender is gone.
pub async fn run(
    api: Connection,
    ttl: Duration,
    mut wanted: watch::Receiver<Wanted>,
    read: watch::Sender<HashMap<ObjectRef, SecretRecord>>,
) {
    let client = api.client().await;
    loop {
        let want = wanted.borrow_and_update().clone();
        let mut secrets = HashMap::new();
        for (id, ingresses) in want {
            let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &id.namespace);
            match api.get_opt(&id.name).await {
                Ok(Some(secret)) => {
                    secrets.insert(id, SecretRecord::from(secret));
                }
                // Logged with its Ingresses when the certificates are built.
                Ok(None) => {}
                Err(error) => {
                    let ingresses: Vec<String> =
                        ingresses.iter().map(ToString::to_string).collect();
                    warn!(secret = %id, ?ingresses, %error, "reading the Ingress TLS Secret through the API server failed; keeping what was read before");
                    if let Some(before) = read.borrow().get(&id).cloned() {
                        secrets.insert(id, before);
                    }
                }
            }
        }
        read.send_if_modified(|current| {
            let changed = *current != secrets;
            *current = secrets;
            changed
        });
        tokio::select! {
            changed = wanted.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep(ttl) => {}
        }
    }
}
