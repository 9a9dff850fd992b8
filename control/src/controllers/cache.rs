//! Informers: every object of the watched kinds, kept current by
//! skiff-etcd's list-then-watch on etcd (not over HTTP), with a signal on
//! each change.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use skiff_etcd::list_watch::{Change, Decoder, Event, ListWatch};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::warn;

use super::kind::Kind;
use crate::store::{Store, collection_prefix};

/// How often a quiet watch reports how far it has got, so that a
/// controller waiting for its own write to show up is not kept waiting by
/// a kind nobody writes.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// How long a controller waits for its writes to reach the cache before it
/// goes on anyway.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Objects {
    by_key: BTreeMap<String, Value>,
    /// Every change up to this revision is in `by_key`.
    revision: i64,
}

/// The cached objects of several kinds.
pub struct Cache {
    store: Store,
    kinds: HashMap<Kind, RwLock<Objects>>,
    changed: watch::Sender<u64>,
}

impl Cache {
    /// Starts an informer for each of `kinds` on `tasks`; the cache fills
    /// as they list.
    pub fn start(store: Store, kinds: &[Kind], tasks: &mut JoinSet<()>) -> Arc<Self> {
        let cache = Arc::new(Self {
            store,
            kinds: kinds
                .iter()
                .map(|&kind| (kind, RwLock::default()))
                .collect(),
            changed: watch::channel(0).0,
        });
        for &kind in kinds {
            tasks.spawn(inform(cache.clone(), kind));
        }
        cache
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn objects(&self, kind: Kind) -> &RwLock<Objects> {
        self.kinds
            .get(&kind)
            .unwrap_or_else(|| panic!("{kind:?} is not cached"))
    }

    /// All cached objects of `kind`, in key order.
    pub fn list(&self, kind: Kind) -> Vec<Value> {
        let objects = self.objects(kind).read().expect("cache lock");
        objects.by_key.values().cloned().collect()
    }

    /// The cached objects of `kind` in `namespace`.
    pub fn list_in(&self, kind: Kind, namespace: &str) -> Vec<Value> {
        let prefix = collection_prefix(kind.storage(), Some(namespace));
        let objects = self.objects(kind).read().expect("cache lock");
        objects
            .by_key
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// One cached object.
    pub fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = crate::store::object_key(kind.storage(), namespace, name);
        let objects = self.objects(kind).read().expect("cache lock");
        objects.by_key.get(&key).cloned()
    }

    /// Whether every kind has listed once.
    fn synced(&self) -> bool {
        self.kinds
            .values()
            .all(|objects| objects.read().expect("cache lock").revision > 0)
    }

    fn revision(&self, kind: Kind) -> i64 {
        self.objects(kind).read().expect("cache lock").revision
    }

    /// A receiver that sees every change to the cache.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Waits until every kind has listed once.
    pub async fn wait_synced(&self) {
        let mut changes = self.subscribe();
        while !self.synced() {
            let _ = changes.changed().await;
        }
    }

    /// Waits (for a while) until `kinds` show everything written to etcd so
    /// far: a controller's next pass must see its own writes, or it would
    /// create the same pods twice.
    pub async fn catch_up(&self, kinds: &[Kind]) {
        let Ok(target) = self.store.current_revision().await else {
            return;
        };
        let mut changes = self.subscribe();
        let caught_up = async {
            while kinds.iter().any(|&kind| self.revision(kind) < target) {
                let _ = changes.changed().await;
            }
        };
        if tokio::time::timeout(CATCH_UP_LIMIT, caught_up)
            .await
            .is_err()
        {
            warn!(target, "the cache did not catch up with the writes");
        }
    }

    fn apply(&self, kind: Kind, event: Event<String, Value>) {
        {
            let mut objects = self.objects(kind).write().expect("cache lock");
            match event {
                Event::Resync {
                    objects: all,
                    revision,
                } => {
                    *objects = Objects {
                        by_key: all.into_iter().collect(),
                        revision,
                    }
                }
                Event::Changes {
                    changes, revision, ..
                } => {
                    for change in changes {
                        match change {
                            Change::Put(key, object) => objects.by_key.insert(key, object),
                            Change::Delete(key) => objects.by_key.remove(&key),
                        };
                    }
                    objects.revision = objects.revision.max(revision);
                }
            }
        }
        self.changed.send_modify(|count| *count += 1);
    }
}

/// Objects as the store reads them (opened when encrypted): JSON objects
/// under their etcd keys, with the revision they were written at as their
/// resourceVersion.
struct StoredObjects(Store);

impl Decoder for StoredObjects {
    type Key = String;
    type Value = Value;

    fn key(&self, key: &[u8]) -> Option<String> {
        String::from_utf8(key.to_vec()).ok()
    }

    fn value(
        &self,
        key: &String,
        value: &[u8],
        mod_revision: i64,
    ) -> Result<Value, serde_json::Error> {
        self.0
            .object_of(key, value, mod_revision)
            .map_err(serde::de::Error::custom)
    }
}

/// Lists, then watches, `kind` for as long as the program runs.
async fn inform(cache: Arc<Cache>, kind: Kind) {
    let prefix = collection_prefix(kind.storage(), None);
    let (tx, mut events) = mpsc::channel(16);
    let follow = ListWatch::shared(
        cache.store.client(),
        vec![prefix],
        StoredObjects(cache.store.clone()),
    )
    .with_progress(PROGRESS_EVERY)
    .run(tx);
    let apply = async {
        while let Some(event) = events.recv().await {
            cache.apply(kind, event);
        }
    };
    tokio::join!(follow, apply);
}
