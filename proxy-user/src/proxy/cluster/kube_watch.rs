//! List and watch of Services, EndpointSlices and the agent's own Node
//! (its zone and eligibility) through an API server (`--source
//! kube-api`), as kube-proxy reads them: kube-rs's watcher does the
//! listing, watching, re-listing and backoff; this keeps a mirror of the
//! three as the agent's records and reports it in the same `ClusterEvent`s
//! the etcd watch sends, so the sync loop cannot tell the sources apart.
//! Needs only what `system:node-proxier` grants (list and watch).
use std::{
    borrow::Cow, collections::HashMap, hash::Hash, marker::PhantomData, sync::Arc, time::Instant,
};

use futures_util::{StreamExt as _, stream};
use k8s_openapi::{
    api::{
        core::v1::{Node, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Resource, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use serde::{Deserialize, Deserializer};
use tokio::sync::mpsc::Sender;

use super::{
    etcd_watch::ClusterEvent,
    records::{Named, NodeRecord, ServiceRecord, SliceRecord},
    service_ref::ServiceRef,
    state::{ObjectChange, SliceRef},
};

/// An object of kind `K` as the agent reads it from the API server: the
/// metadata the watcher resumes by, and its record `R`, read straight from
/// the API server's JSON by the etcd watch's parser (`records::Named`):
/// nothing is decoded into k8s-openapi's types and encoded again.
#[derive(Clone, Debug)]
pub(super) struct Watched<K, R> {
    meta: ObjectMeta,
    /// The record, or why the object could not be read as one.
    record: Result<R, Arc<serde_json::Error>>,
    kind: PhantomData<fn() -> K>,
}

type WatchedService = Watched<Service, ServiceRecord>;
type WatchedSlice = Watched<EndpointSlice, SliceRecord>;
type WatchedNode = Watched<Node, NodeRecord>;

/// `K`'s kind, group, version and resource name: `Api` and the watcher
/// address the API by them.
impl<K: Resource<DynamicType = ()>, R> Resource for Watched<K, R> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

impl<'de, K, R> Deserialize<'de> for Watched<K, R>
where
    Named<R>: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let named = Named::<R>::deserialize(deserializer)?;
        let namespace = &named.name.namespace;
        Ok(Watched {
            meta: ObjectMeta {
                namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
                name: Some(named.name.name.to_string()),
                resource_version: named.resource_version.map(String::from),
                ..ObjectMeta::default()
            },
            record: named.record,
            kind: PhantomData,
        })
    }
}

/// Lists and then watches Services and EndpointSlices in every namespace,
/// and the Node `node_name`, with `client`, sending what it sees to `tx`: a
/// `Resync` once all three are listed and after every re-list (objects deleted while the watch was
/// down are then gone), `Changes` in between. Returns only once `tx`'s
/// receiver is gone.
pub async fn run(client: kube::Client, node_name: &str, tx: Sender<ClusterEvent>) {
    let services = watcher(
        Api::<WatchedService>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|event| event.map(|event| Update::Service(Box::new(event))));
    let slices = watcher(
        Api::<WatchedSlice>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|event| event.map(|event| Update::Slice(Box::new(event))));
    let node = watcher(
        Api::<WatchedNode>::all(client),
        watcher::Config::default().fields(&format!("metadata.name={node_name}")),
    )
    .default_backoff()
    .map(|event| event.map(|event| Update::Node(Box::new(event))));
    let mut updates = std::pin::pin!(stream::select(stream::select(services, slices), node));
    let mut mirror = Mirror::default();
    while let Some(update) = updates.next().await {
        let update = match update {
            Ok(update) => update,
            Err(error) => {
                tracing::warn!(%error, "watching the API server failed; retrying");
                continue;
            }
        };
        if let Some(event) = mirror.apply(update)
            && tx.send(event).await.is_err()
        {
            return;
        }
    }
}

/// One watcher event, of any of the three kinds (boxed: a Service's
/// record is large beside the others).
enum Update {
    Service(Box<watcher::Event<WatchedService>>),
    Slice(Box<watcher::Event<WatchedSlice>>),
    Node(Box<watcher::Event<WatchedNode>>),
}

/// The three kinds as last listed and changed since.
#[derive(Default)]
struct Mirror {
    services: Listing<ServiceRef, ServiceRecord>,
    slices: Listing<SliceRef, SliceRecord>,
    /// The agent's own Node, if registered (one entry at most).
    node: Listing<ServiceRef, NodeRecord>,
    /// The highest resourceVersion seen: the events' revision.
    revision: i64,
}

impl Mirror {
    /// Takes in `update`; what the sync loop must hear of it, if anything.
    fn apply(&mut self, update: Update) -> Option<ClusterEvent> {
        let received = Instant::now();
        let (change, listed) = match update {
            Update::Service(event) => {
                let event = self.read(*event);
                let listed = matches!(event, watcher::Event::InitDone);
                let change = self
                    .services
                    .apply(event)
                    .map(|(name, record)| match record {
                        Some(record) => ObjectChange::ServiceUpsert(name, record),
                        None => ObjectChange::ServiceDelete(name),
                    });
                (change, listed)
            }
            Update::Slice(event) => {
                let event = self.read(*event);
                let listed = matches!(event, watcher::Event::InitDone);
                let change = self.slices.apply(event).map(|(name, record)| match record {
                    Some(record) => ObjectChange::SliceUpsert(name, record),
                    None => ObjectChange::SliceDelete(name),
                });
                (change, listed)
            }
            Update::Node(event) => {
                let event = self.read(*event);
                let listed = matches!(event, watcher::Event::InitDone);
                let change = self.node.apply(event).map(|(_, record)| match record {
                    Some(record) => ObjectChange::NodeUpsert(record),
                    None => ObjectChange::NodeDelete,
                });
                (change, listed)
            }
        };
        if !(self.services.listed && self.slices.listed && self.node.listed) {
            return None;
        }
        if listed {
            return Some(ClusterEvent::Resync {
                services: self.services.snapshot(),
                slices: self.slices.snapshot(),
                node: self.node.current.values().next().cloned(),
                revision: self.revision,
            });
        }
        change.map(|change| ClusterEvent::Changes {
            changes: vec![change],
            revision: self.revision,
            received,
        })
    }

    /// `event`'s object as the agent's record under its namespace and
    /// name; an object the agent cannot read is skipped with a warning, as
    /// the etcd watch skips it.
    fn read<K, R>(
        &mut self,
        event: watcher::Event<Watched<K, R>>,
    ) -> watcher::Event<Option<(ServiceRef, Option<R>)>>
    where
        K: Resource<DynamicType = ()>,
    {
        let mut read = |object: Watched<K, R>, deleted: bool| {
            if let Some(version) = object
                .resource_version()
                .and_then(|version| version.parse::<i64>().ok())
            {
                self.revision = self.revision.max(version);
            }
            let name = ServiceRef {
                namespace: object.namespace().unwrap_or_default().into(),
                name: object.name_any().into(),
            };
            if deleted {
                return Some((name, None));
            }
            match object.record {
                Ok(record) => Some((name, Some(record))),
                Err(error) => {
                    tracing::warn!(object = %name, %error, "skipping an object the agent cannot read");
                    None
                }
            }
        };
        match event {
            watcher::Event::Apply(object) => watcher::Event::Apply(read(object, false)),
            watcher::Event::Delete(object) => watcher::Event::Delete(read(object, true)),
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitApply(object) => watcher::Event::InitApply(read(object, false)),
            watcher::Event::InitDone => watcher::Event::InitDone,
        }
    }
}

/// One kind's objects: those of the last complete list, changed since.
struct Listing<K, V> {
    current: HashMap<K, V>,
    /// The list under way, until its `InitDone`.
    listing: Option<HashMap<K, V>>,
    /// Whether a list has completed.
    listed: bool,
}

impl<K, V> Default for Listing<K, V> {
    fn default() -> Self {
        Listing {
            current: HashMap::new(),
            listing: None,
            listed: false,
        }
    }
}

impl<K: Clone + Eq + Hash, V: Clone> Listing<K, V> {
    /// Takes in `event` (`None` objects were unreadable); the change it
    /// makes to a listed kind (`None` value: a delete).
    fn apply(&mut self, event: watcher::Event<Option<(K, Option<V>)>>) -> Option<(K, Option<V>)> {
        match event {
            watcher::Event::Init => {
                self.listing = Some(HashMap::new());
                None
            }
            watcher::Event::InitApply(object) => {
                if let (Some(listing), Some((name, Some(record)))) = (&mut self.listing, object) {
                    listing.insert(name, record);
                }
                None
            }
            watcher::Event::InitDone => {
                self.current = self.listing.take().unwrap_or_default();
                self.listed = true;
                None
            }
            watcher::Event::Apply(object) | watcher::Event::Delete(object) => {
                let (name, record) = object?;
                match &record {
                    Some(record) => self.current.insert(name.clone(), record.clone()),
                    None => self.current.remove(&name),
                };
                Some((name, record))
            }
        }
    }

    fn snapshot(&self) -> Vec<(K, V)> {
        self.current
            .iter()
            .map(|(name, record)| (name.clone(), record.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests;
