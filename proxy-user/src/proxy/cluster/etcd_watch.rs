//! List and watch of Services and EndpointSlices straight from etcd, in
//! Kubernetes' own key layout, so the API server is never on the datapath's
//! update path. skiff-etcd's list-then-watch does the listing, watching,
//! re-listing and backoff; this maps what it reads to the agent's records.

use skiff_etcd::keys::{ENDPOINT_SLICES, SERVICES, collection_prefix, parse_namespaced};
use skiff_etcd::list_watch::{Change, Decoder, Event, ListWatch};
use tokio::sync::mpsc::Sender;

use super::records::{ServiceRecord, SliceRecord};
use super::service_ref::ServiceRef;
use super::state::{ObjectChange, SliceRef};

/// What the cluster watch reports to the agent.
#[derive(Clone, Debug)]
pub enum ClusterEvent {
    /// Everything etcd holds at `revision`. Sent on start and after every
    /// reconnect: the consumer replaces its whole view (events may have been
    /// missed in between).
    Resync {
        services: Vec<(ServiceRef, ServiceRecord)>,
        slices: Vec<(SliceRef, SliceRecord)>,
        revision: i64,
    },
    /// The changes of one watch response, in order; `revision` is that of
    /// the last one.
    Changes {
        changes: Vec<ObjectChange>,
        revision: i64,
        /// When the watch response arrived, so the consumer can measure
        /// how long a change takes to reach the datapath.
        received: std::time::Instant,
    },
}

/// Lists and then watches Services and EndpointSlices in etcd at
/// `endpoints`, sending what it sees to `tx`, reconnecting and re-listing
/// (with backoff) whenever etcd is unreachable or the watch breaks. Returns
/// only once `tx`'s receiver is gone.
pub async fn run(endpoints: Vec<String>, tx: Sender<ClusterEvent>) {
    let prefixes = vec![
        collection_prefix(SERVICES, None),
        collection_prefix(ENDPOINT_SLICES, None),
    ];
    ListWatch::new(endpoints, prefixes, Records).run(tx).await
}

/// Which kind a key holds, and the object's namespace and name. (The
/// sibling `/registry/services/endpoints/` holds legacy Endpoints, which
/// are neither.)
#[derive(Clone, Debug, PartialEq, Eq)]
enum Name {
    Service(ServiceRef),
    Slice(SliceRef),
}

/// An object as the agent keeps it, under the name its key gives it.
#[derive(Clone, Debug)]
enum Record {
    Service(ServiceRef, ServiceRecord),
    Slice(SliceRef, SliceRecord),
}

/// Reads Services and EndpointSlices as the agent's records.
struct Records;

impl Decoder for Records {
    type Key = Name;
    type Value = Record;

    fn key(&self, key: &[u8]) -> Option<Name> {
        let name = |(namespace, name): (String, String)| ServiceRef {
            namespace: namespace.into(),
            name: name.into(),
        };
        if let Some(service) = parse_namespaced(SERVICES, key) {
            return Some(Name::Service(name(service)));
        }
        parse_namespaced(ENDPOINT_SLICES, key).map(|slice| Name::Slice(name(slice)))
    }

    /// The key is the object's identity in etcd (a DELETE carries nothing
    /// else), so the record is filed under it even if the stored metadata
    /// omits or contradicts it; otherwise its delete would miss.
    fn value(&self, key: &Name, value: &[u8], _: i64) -> Result<Record, serde_json::Error> {
        Ok(match key {
            Name::Service(name) => {
                Record::Service(name.clone(), ServiceRecord::from_json(name, value)?)
            }
            Name::Slice(name) => Record::Slice(name.clone(), SliceRecord::from_json(name, value)?),
        })
    }
}

impl From<Event<Name, Record>> for ClusterEvent {
    fn from(event: Event<Name, Record>) -> Self {
        match event {
            Event::Resync { objects, revision } => {
                let mut services = Vec::new();
                let mut slices = Vec::new();
                for (_, record) in objects {
                    match record {
                        Record::Service(name, service) => services.push((name, service)),
                        Record::Slice(name, slice) => slices.push((name, slice)),
                    }
                }
                ClusterEvent::Resync {
                    services,
                    slices,
                    revision,
                }
            }
            Event::Changes {
                changes,
                revision,
                received,
            } => ClusterEvent::Changes {
                changes: changes.into_iter().map(change_of).collect(),
                revision,
                received,
            },
        }
    }
}

/// The change a watch event stands for.
fn change_of(change: Change<Name, Record>) -> ObjectChange {
    match change {
        Change::Put(_, Record::Service(name, service)) => {
            ObjectChange::ServiceUpsert(name, service)
        }
        Change::Put(_, Record::Slice(name, slice)) => ObjectChange::SliceUpsert(name, slice),
        Change::Delete(Name::Service(name)) => ObjectChange::ServiceDelete(name),
        Change::Delete(Name::Slice(name)) => ObjectChange::SliceDelete(name),
    }
}

/// The fuzz target `agent_records`' entry: a key and a value read as the
/// watch reads them.
#[cfg(fuzzing)]
pub fn decode(key: &[u8], value: &[u8]) {
    if let Some(name) = Records.key(key) {
        let _ = Records.value(&name, value, 0);
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
