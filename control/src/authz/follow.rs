//! Objects under a few etcd roots, kept in memory by one list-then-watch
//! (skiff-etcd's `list_watch`), and an index rebuilt from them after each
//! change, so that no request reads etcd to be authorized.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use skiff_etcd::list_watch::{Change, Decoder, Event, ListWatch};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::warn;

use crate::store::{Store, collection_prefix};

/// The stored objects under their keys.
pub type Objects = BTreeMap<String, Value>;

/// The index `T` of the objects under some roots, as last seen.
pub struct Followed<T> {
    index: Arc<RwLock<Arc<T>>>,
    /// Turns true once the first list is in.
    synced: watch::Receiver<bool>,
}

impl<T> Clone for Followed<T> {
    fn clone(&self) -> Self {
        Self {
            index: self.index.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<T: Default + Send + Sync + 'static> Followed<T> {
    /// Starts following `roots` on `tasks`; the index is `build` of the
    /// objects once they are listed, and again after every change.
    pub fn start(
        store: &Store,
        roots: &[&str],
        build: fn(&Objects) -> T,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let (synced_tx, synced) = watch::channel(false);
        let followed = Self {
            index: Arc::default(),
            synced,
        };
        let prefixes = roots
            .iter()
            .map(|root| collection_prefix(root, None))
            .collect();
        let (tx, mut events) = mpsc::channel(16);
        let follow = ListWatch::shared(store.client(), prefixes, RawObjects).run(tx);
        let index = followed.index.clone();
        let apply = async move {
            let mut objects = Objects::new();
            while let Some(event) = events.recv().await {
                if apply(&mut objects, event) {
                    *index.write().expect("index lock") = Arc::new(build(&objects));
                    synced_tx.send_replace(true);
                }
            }
        };
        tasks.spawn(async move {
            tokio::join!(follow, apply);
        });
        followed
    }
}

impl<T> Followed<T> {
    /// The index as last seen.
    pub fn current(&self) -> Arc<T> {
        self.index.read().expect("index lock").clone()
    }

    /// Waits (at most `limit`) for the first list; `what` names the index
    /// in the warning if it does not come.
    pub async fn wait_synced(&self, limit: Duration, what: &str) {
        let mut synced = self.synced.clone();
        if tokio::time::timeout(limit, synced.wait_for(|&synced| synced))
            .await
            .is_err()
        {
            warn!("{what} has not listed yet: requests are judged on an empty one");
        }
    }
}

/// Applies `event` to `objects`; whether anything changed.
fn apply(objects: &mut Objects, event: Event<String, Value>) -> bool {
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
