//! The authorizer's view of the four RBAC kinds, kept in memory by one
//! list-then-watch on etcd (skiff-etcd's `list_watch`), so that no request
//! reads etcd to be authorized.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use skiff_etcd::keys;
use skiff_etcd::list_watch::{Change, Decoder, Event, ListWatch};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::warn;

use super::policy::Policy;
use crate::store::{Store, collection_prefix};

/// The stored RBAC objects under their keys, and the index built from
/// them after each change.
#[derive(Clone)]
pub struct PolicyCache {
    policy: Arc<RwLock<Arc<Policy>>>,
    /// Turns true once the first list is in.
    synced: watch::Receiver<bool>,
}

/// How an object of one kind is added to the index.
type AddTo = fn(&mut Policy, &Value);

/// The four kinds' roots, and what each object is added to the index as.
const ROOTS: [(&str, AddTo); 4] = [
    (keys::ROLES, Policy::add_role),
    (keys::CLUSTER_ROLES, Policy::add_cluster_role),
    (keys::ROLE_BINDINGS, Policy::add_role_binding),
    (
        keys::CLUSTER_ROLE_BINDINGS,
        Policy::add_cluster_role_binding,
    ),
];

impl PolicyCache {
    /// Starts following etcd on `tasks`; the cache fills once it has listed.
    pub fn start(store: &Store, tasks: &mut JoinSet<()>) -> Self {
        let (synced_tx, synced) = watch::channel(false);
        let cache = Self {
            policy: Arc::default(),
            synced,
        };
        let prefixes = ROOTS
            .iter()
            .map(|(root, _)| collection_prefix(root, None))
            .collect();
        let (tx, mut events) = mpsc::channel(16);
        let follow = ListWatch::shared(store.client(), prefixes, RawObjects).run(tx);
        let policy = cache.policy.clone();
        let apply = async move {
            let mut objects = BTreeMap::new();
            while let Some(event) = events.recv().await {
                if apply(&mut objects, event) {
                    *policy.write().expect("policy lock") = Arc::new(index(&objects));
                    synced_tx.send_replace(true);
                }
            }
        };
        tasks.spawn(async move {
            tokio::join!(follow, apply);
        });
        cache
    }

    /// A cache that holds `policy` and follows nothing (tests).
    pub fn fixed(policy: Policy) -> Self {
        Self {
            policy: Arc::new(RwLock::new(Arc::new(policy))),
            synced: watch::channel(true).1,
        }
    }

    /// The policy as last seen.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().expect("policy lock").clone()
    }

    /// Waits (at most `limit`) for the first list.
    pub async fn wait_synced(&self, limit: Duration) {
        let mut synced = self.synced.clone();
        if tokio::time::timeout(limit, synced.wait_for(|&synced| synced))
            .await
            .is_err()
        {
            warn!("the RBAC cache has not listed yet: requests are judged on an empty policy");
        }
    }
}

/// Applies `event` to `objects`; whether anything changed.
fn apply(objects: &mut BTreeMap<String, Value>, event: Event<String, Value>) -> bool {
    match event {
        Event::Resync { objects: all, .. } => {
            *objects = all.into_iter().collect();
            true
        }
        Event::Changes { changes, .. } => {
            let changed = !changes.is_empty();
            for change in changes {
                match change {
                    Change::Put(key, object) => objects.insert(key, object),
                    Change::Delete(key) => objects.remove(&key),
                };
            }
            changed
        }
    }
}

fn index(objects: &BTreeMap<String, Value>) -> Policy {
    let mut policy = Policy::default();
    for (key, object) in objects {
        if let Some((_, add)) = ROOTS
            .iter()
            .find(|(root, _)| key.starts_with(&collection_prefix(root, None)))
        {
            add(&mut policy, object);
        }
    }
    policy
}

/// Objects as JSON under their keys.
struct RawObjects;

impl Decoder for RawObjects {
    type Key = String;
    type Value = Value;

    fn key(&self, key: &[u8]) -> Option<String> {
        String::from_utf8(key.to_vec()).ok()
    }

    fn value(&self, _: &String, value: &[u8], _: i64) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(value)
    }
}
